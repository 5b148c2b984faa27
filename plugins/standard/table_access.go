package standard

import _ "github.com/sluicepg/sluice/plugins/table_access"
