package standard

import _ "github.com/sluicepg/sluice/plugins/wasm" // [plugins.wasm]: WebAssembly modules
