//go:build !wasip1

package wasmguest

import "unsafe"

// On other platforms the package compiles, so that guests can be vetted and documented with the
// host's toolchain, but every host function panics: a guest only runs inside sluice.

const notWasm = "wasmguest: this program must be built with GOOS=wasip1 GOARCH=wasm and run by sluice"

func hostGetConfig(unsafe.Pointer, uint32) uint32               { panic(notWasm) }
func hostGetQuery(unsafe.Pointer, uint32) uint32                { panic(notWasm) }
func hostGetQueryKind(unsafe.Pointer, uint32) uint32            { panic(notWasm) }
func hostGetQueryFlags() int32                                  { panic(notWasm) }
func hostGetTables(int32, unsafe.Pointer, uint32) uint32        { panic(notWasm) }
func hostGetParamCount() int32                                  { panic(notWasm) }
func hostGetParam(int32, unsafe.Pointer, uint32) int32          { panic(notWasm) }
func hostGetParamFormat(int32) int32                            { panic(notWasm) }
func hostGetClient(int32, unsafe.Pointer, uint32) uint32        { panic(notWasm) }
func hostSetClient(int32, unsafe.Pointer, uint32)               { panic(notWasm) }
func hostSetRewrite(unsafe.Pointer, uint32)                     { panic(notWasm) }
func hostReject(unsafe.Pointer, uint32, unsafe.Pointer, uint32) { panic(notWasm) }
func hostLog(int32, unsafe.Pointer, uint32)                     { panic(notWasm) }
func hostLogEnabled(int32) int32                                { panic(notWasm) }
