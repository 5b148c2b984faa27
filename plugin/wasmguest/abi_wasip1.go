//go:build wasip1

package wasmguest

import "unsafe"

// The host functions of the "sluice" module (docs/plugins.md, "Wasm plugins").

//go:wasmimport sluice get_config
func hostGetConfig(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport sluice get_query
func hostGetQuery(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport sluice get_query_kind
func hostGetQueryKind(buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport sluice get_query_flags
func hostGetQueryFlags() int32

//go:wasmimport sluice get_tables
func hostGetTables(which int32, buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport sluice get_param_count
func hostGetParamCount() int32

//go:wasmimport sluice get_param
func hostGetParam(i int32, buf unsafe.Pointer, limit uint32) int32

//go:wasmimport sluice get_param_format
func hostGetParamFormat(i int32) int32

//go:wasmimport sluice get_client
func hostGetClient(field int32, buf unsafe.Pointer, limit uint32) uint32

//go:wasmimport sluice set_client
func hostSetClient(field int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice set_rewrite
func hostSetRewrite(ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice reject
func hostReject(codePtr unsafe.Pointer, codeLen uint32, msgPtr unsafe.Pointer, msgLen uint32)

//go:wasmimport sluice log
func hostLog(level int32, ptr unsafe.Pointer, n uint32)

//go:wasmimport sluice log_enabled
func hostLogEnabled(level int32) int32

// The exports sluice calls.

//go:wasmexport features
func exportFeatures() int32 { return features() }

//go:wasmexport on_query
func exportOnQuery() int32 { return runQuery() }

//go:wasmexport on_startup
func exportOnStartup() int32 { return runStartup() }

//go:wasmexport on_auth
func exportOnAuth() int32 { return runAuth() }
