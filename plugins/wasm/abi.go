package wasm

import (
	"context"
	"log/slog"
	"net"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The ABI between sluice and a guest, version 1. docs/plugins.md ("Wasm plugins") is its
// reference; plugin/wasmguest implements the guest side for Go. The numbers below are part of
// the ABI: never renumber them.

// HostModule is the import module of every host function.
const HostModule = "sluice"

// Features a guest's "features" export returns: the hooks it wants called.
const (
	FeatureQuery   uint32 = 1 << 0 // call on_query for each query
	FeatureStartup uint32 = 1 << 1 // call on_startup when a client's startup packet arrives
	FeatureAuth    uint32 = 1 << 2 // call on_auth after the password was checked

	knownFeatures = FeatureQuery | FeatureStartup | FeatureAuth
)

// Results of a hook export.
const (
	ActionContinue int32 = 0 // go on; anything set with set_rewrite is ignored
	ActionReject   int32 = 1 // refuse with what reject() recorded (42501 if nothing)
	ActionRewrite  int32 = 2 // on_query only: run the text given to set_rewrite instead
)

// Fields of get_client and set_client.
const (
	ClientUser            int32 = 0
	ClientDatabase        int32 = 1
	ClientApplicationName int32 = 2
	ClientAddr            int32 = 3
)

// Bits of get_query_flags. The protocol is in the two low bits.
const (
	FlagProtocolMask  int32 = 3      // 0 simple Query, 1 Parse, 2 Bind
	FlagInTransaction int32 = 1 << 2 // the query runs inside a transaction block
	FlagWrite         int32 = 1 << 3 // the statement writes (only when the pool parses queries)
)

// Results of get_param besides a length.
const (
	ParamNull    int32 = -1 // the parameter is NULL
	ParamMissing int32 = -2 // there is no parameter with that index
)

// Log levels of log and log_enabled, as in http-wasm.
const (
	LogDebug int32 = -1
	LogInfo  int32 = 0
	LogWarn  int32 = 1
	LogError int32 = 2
)

// hostFunc is one host function: its name, its Wasm signature and its Go body.
type hostFunc struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	fn      func(c *call, mod api.Module, stack []uint64)
}

var (
	i32 = api.ValueTypeI32
)

func sig(n int) []api.ValueType {
	s := make([]api.ValueType, n)
	for i := range s {
		s[i] = i32
	}
	return s
}

// hostFuncs is the "sluice" module. Every get_* that copies bytes has the same contract: it
// returns the value's full length, and writes the value at buf only when that length is at most
// limit (never a part of it), so a guest can retry with a larger buffer.
var hostFuncs = []hostFunc{
	{"get_config", sig(2), sig(1), func(c *call, mod api.Module, s []uint64) {
		s[0] = writeBytes(mod, s, c.inst.m.config)
	}},
	{"get_query", sig(2), sig(1), func(c *call, mod api.Module, s []uint64) {
		s[0] = writeString(mod, s, c.text)
	}},
	{"get_query_kind", sig(2), sig(1), func(c *call, mod api.Module, s []uint64) {
		var kind string
		if c.q != nil {
			kind = c.q.Kind
		}
		s[0] = writeString(mod, s, kind)
	}},
	{"get_query_flags", nil, sig(1), func(c *call, mod api.Module, s []uint64) {
		var f int32
		if q := c.q; q != nil {
			f = int32(q.Protocol) & FlagProtocolMask
			if q.InTransaction {
				f |= FlagInTransaction
			}
			if q.Write {
				f |= FlagWrite
			}
		}
		s[0] = api.EncodeI32(f)
	}},
	{"get_tables", sig(3), sig(1), func(c *call, mod api.Module, s []uint64) {
		var tables []string
		if c.q != nil {
			tables = c.q.Reads
			if api.DecodeI32(s[0]) == 1 {
				tables = c.q.Writes
			}
		}
		n := 0
		for _, t := range tables {
			n += len(t) + 1
		}
		buf, limit := api.DecodeU32(s[1]), api.DecodeU32(s[2])
		if uint32(n) <= limit {
			for _, t := range tables {
				mustWrite(mod, buf, t)
				mustWrite(mod, buf+uint32(len(t)), "\x00")
				buf += uint32(len(t)) + 1
			}
		}
		s[0] = uint64(n)
	}},
	{"get_param_count", nil, sig(1), func(c *call, mod api.Module, s []uint64) {
		n := 0
		if c.q != nil {
			n = len(c.q.Params)
		}
		s[0] = uint64(n)
	}},
	{"get_param", sig(3), sig(1), func(c *call, mod api.Module, s []uint64) {
		i := api.DecodeI32(s[0])
		if c.q == nil || i < 0 || int(i) >= len(c.q.Params) {
			s[0] = api.EncodeI32(ParamMissing)
			return
		}
		p := c.q.Params[i]
		if p.Value == nil {
			s[0] = api.EncodeI32(ParamNull)
			return
		}
		s[0] = writeBytes(mod, s[1:], p.Value)
	}},
	{"get_param_format", sig(1), sig(1), func(c *call, mod api.Module, s []uint64) {
		i := api.DecodeI32(s[0])
		switch {
		case c.q == nil || i < 0 || int(i) >= len(c.q.Params):
			s[0] = api.EncodeI32(ParamMissing)
		case c.q.Params[i].Binary:
			s[0] = 1
		default:
			s[0] = 0
		}
	}},
	{"get_client", sig(3), sig(1), func(c *call, mod api.Module, s []uint64) {
		s[0] = writeString(mod, s[1:], c.clientField(api.DecodeI32(s[0])))
	}},
	{"set_client", sig(3), nil, func(c *call, mod api.Module, s []uint64) {
		if c.startup == nil {
			panic("set_client is only allowed in on_startup")
		}
		v := string(mustRead(mod, api.DecodeU32(s[1]), api.DecodeU32(s[2])))
		switch api.DecodeI32(s[0]) {
		case ClientUser:
			c.startup.User = v
		case ClientDatabase:
			c.startup.Database = v
		default:
			panic("set_client: only the user (0) and the database (1) can be set")
		}
	}},
	{"set_rewrite", sig(2), nil, func(c *call, mod api.Module, s []uint64) {
		c.rewrite = string(mustRead(mod, api.DecodeU32(s[0]), api.DecodeU32(s[1])))
		c.rewriteSet = true
	}},
	{"reject", sig(4), nil, func(c *call, mod api.Module, s []uint64) {
		c.rejectCode = string(mustRead(mod, api.DecodeU32(s[0]), api.DecodeU32(s[1])))
		c.rejectMsg = string(mustRead(mod, api.DecodeU32(s[2]), api.DecodeU32(s[3])))
	}},
	{"log", sig(3), nil, func(c *call, mod api.Module, s []uint64) {
		lvl := slogLevel(api.DecodeI32(s[0]))
		if !c.inst.m.log.Enabled(c.ctx, lvl) {
			return
		}
		msg := string(mustRead(mod, api.DecodeU32(s[1]), api.DecodeU32(s[2])))
		c.inst.m.log.Log(c.ctx, lvl, msg)
	}},
	{"log_enabled", sig(1), sig(1), func(c *call, mod api.Module, s []uint64) {
		if c.inst.m.log.Enabled(c.ctx, slogLevel(api.DecodeI32(s[0]))) {
			s[0] = 1
		} else {
			s[0] = 0
		}
	}},
}

// instantiateHost adds the "sluice" module to rt. Each function finds the call it serves in
// its context (see callCtx).
func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(HostModule)
	for _, hf := range hostFuncs {
		fn := hf.fn
		b.NewFunctionBuilder().
			WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
				c, _ := ctx.Value(callKey{}).(*call)
				if c == nil {
					panic("sluice host function called outside a hook")
				}
				fn(c, mod, stack)
			}), hf.params, hf.results).
			Export(hf.name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func (c *call) clientField(f int32) string {
	if st := c.startup; st != nil {
		switch f {
		case ClientUser:
			return st.User
		case ClientDatabase:
			return st.Database
		case ClientApplicationName:
			return st.Params["application_name"]
		case ClientAddr:
			return addrString(st.Addr)
		}
		return ""
	}
	cl := c.client
	if cl == nil && c.q != nil {
		cl = c.q.Client
	}
	if cl == nil {
		return ""
	}
	switch f {
	case ClientUser:
		return cl.User
	case ClientDatabase:
		return cl.Database
	case ClientApplicationName:
		return cl.ApplicationName
	case ClientAddr:
		return addrString(cl.Addr)
	}
	return ""
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func slogLevel(l int32) slog.Level {
	switch {
	case l < 0:
		return slog.LevelDebug
	case l == 0:
		return slog.LevelInfo
	case l == 1:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// writeString implements the get_* contract for v with (buf, limit) in s[0], s[1].
func writeString(mod api.Module, s []uint64, v string) uint64 {
	buf, limit := api.DecodeU32(s[0]), api.DecodeU32(s[1])
	if uint32(len(v)) <= limit && len(v) > 0 {
		mustWrite(mod, buf, v)
	}
	return uint64(uint32(len(v)))
}

func writeBytes(mod api.Module, s []uint64, v []byte) uint64 {
	buf, limit := api.DecodeU32(s[0]), api.DecodeU32(s[1])
	if uint32(len(v)) <= limit && len(v) > 0 {
		if !mod.Memory().Write(buf, v) {
			panic(errOutOfRange)
		}
	}
	return uint64(uint32(len(v)))
}

func mustWrite(mod api.Module, off uint32, v string) {
	if !mod.Memory().WriteString(off, v) {
		panic(errOutOfRange)
	}
}

// mustRead returns a view of the guest's memory: copy what outlives the host function.
func mustRead(mod api.Module, off, n uint32) []byte {
	b, ok := mod.Memory().Read(off, n)
	if !ok {
		panic(errOutOfRange)
	}
	return b
}

type abiError string

func (e abiError) Error() string { return string(e) }

const errOutOfRange = abiError("a host function was given a buffer outside the guest's memory")
