package standard

import _ "github.com/sluicepg/sluice/plugins/webhook"
