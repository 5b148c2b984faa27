package standard

// The Redis result cache: [plugins.cache].
import _ "github.com/sluicepg/sluice/plugins/cache"
