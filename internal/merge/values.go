package merge

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// Type OIDs of the built-in types sluice compares and sums.
const (
	oidBool        = 16
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidUUID        = 2950
)

// comparator compares two non-NULL values of one type in one format; an error for a value it
// cannot read.
type comparator func(a, b []byte) (int, error)

// comparatorFor returns the comparator for values of a type OID in a format (0 text, 1
// binary), or nil when sluice cannot compare them.
func comparatorFor(oid uint32, format uint16) comparator {
	switch format {
	case 0:
		return textComparator(oid)
	case 1:
		return binaryComparator(oid)
	}
	return nil
}

// textComparator returns the comparator for text values of a type OID, or nil.
func textComparator(oid uint32) comparator {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		return cmpInt
	case oidNumeric:
		return cmpNumeric
	case oidFloat4, oidFloat8:
		return cmpFloat
	case oidText, oidVarchar, oidName, oidUUID, oidBool, oidTime:
		// bool's text is f or t; uuid's is lower-case hex; time's is fixed-width: byte order
		// is value order.
		return func(a, b []byte) (int, error) { return bytes.Compare(a, b), nil }
	case oidBpchar:
		// bpchar compares without its trailing spaces.
		return func(a, b []byte) (int, error) {
			return bytes.Compare(bytes.TrimRight(a, " "), bytes.TrimRight(b, " ")), nil
		}
	case oidDate, oidTimestamp, oidTimestamptz:
		return cmpDateTime
	}
	return nil
}

func cmpInt(a, b []byte) (int, error) {
	x, err := strconv.ParseInt(string(a), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read integer %q: %w", a, err)
	}
	y, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read integer %q: %w", b, err)
	}
	return cmp3(x < y, x > y), nil
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// cmpFloat orders floats as Postgres does: NaN above everything, -0 equal to 0.
func cmpFloat(a, b []byte) (int, error) {
	x, err := parseFloat(a)
	if err != nil {
		return 0, err
	}
	y, err := parseFloat(b)
	if err != nil {
		return 0, err
	}
	return cmpFloats(x, y), nil
}

func parseFloat(b []byte) (float64, error) {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil && !strings.Contains(err.Error(), "out of range") {
		return 0, fmt.Errorf("read float %q: %w", b, err)
	}
	return f, nil
}

func cmpNumeric(a, b []byte) (int, error) {
	x, err := parseDecimal(a)
	if err != nil {
		return 0, err
	}
	y, err := parseDecimal(b)
	if err != nil {
		return 0, err
	}
	return x.cmp(&y), nil
}

// decimal is a numeric value: v × 10^-scale, or NaN, or ±Infinity (inf = ±1).
type decimal struct {
	v     big.Int
	scale int
	nan   bool
	inf   int
}

func parseDecimal(b []byte) (decimal, error) {
	var d decimal
	s := string(b)
	switch s {
	case "NaN":
		d.nan = true
		return d, nil
	case "Infinity":
		d.inf = 1
		return d, nil
	case "-Infinity":
		d.inf = -1
		return d, nil
	}
	digits := s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		d.scale = len(s) - i - 1
		digits = s[:i] + s[i+1:]
	}
	if strings.ContainsAny(digits, "eE") {
		return d, fmt.Errorf("read numeric %q: exponent form", b)
	}
	if _, ok := d.v.SetString(digits, 10); !ok {
		return d, fmt.Errorf("read numeric %q", b)
	}
	return d, nil
}

// rank orders the special values: -Infinity < numbers < Infinity < NaN (as Postgres).
func (d *decimal) rank() int {
	switch {
	case d.nan:
		return 2
	case d.inf != 0:
		return d.inf
	}
	return 0
}

func (d *decimal) cmp(e *decimal) int {
	if r, s := d.rank(), e.rank(); r != 0 || s != 0 {
		return cmp3(r < s, r > s)
	}
	x, y := d.aligned(e.scale), e.aligned(d.scale)
	return x.Cmp(y)
}

// aligned returns v scaled to max(scale, other).
func (d *decimal) aligned(other int) *big.Int {
	if other <= d.scale {
		return &d.v
	}
	return new(big.Int).Mul(&d.v, pow10(other-d.scale))
}

func pow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// add sets d to d + e, with the larger scale, as Postgres' numeric addition.
func (d *decimal) add(e *decimal) {
	if d.nan || e.nan || (d.inf != 0 && e.inf != 0 && d.inf != e.inf) {
		*d = decimal{nan: true}
		return
	}
	if d.inf != 0 {
		return
	}
	if e.inf != 0 {
		*d = decimal{inf: e.inf}
		return
	}
	scale := max(d.scale, e.scale)
	x, y := d.aligned(scale), e.aligned(scale)
	var sum big.Int
	sum.Add(x, y)
	d.v.Set(&sum)
	d.scale = scale
}

func (d *decimal) String() string {
	switch {
	case d.nan:
		return "NaN"
	case d.inf > 0:
		return "Infinity"
	case d.inf < 0:
		return "-Infinity"
	}
	neg := d.v.Sign() < 0
	digits := new(big.Int).Abs(&d.v).String()
	if d.scale > 0 {
		if len(digits) <= d.scale {
			digits = strings.Repeat("0", d.scale-len(digits)+1) + digits
		}
		digits = digits[:len(digits)-d.scale] + "." + digits[len(digits)-d.scale:]
	}
	if neg {
		return "-" + digits
	}
	return digits
}

// weight returns, for a non-zero value, the weight of its first non-zero base-10000 digit
// (Postgres' NumericVar weight after stripping) and that digit; 0, 0 for zero.
func (d *decimal) weight() (int, int64) {
	if d.v.Sign() == 0 {
		return 0, 0
	}
	abs := new(big.Int).Abs(&d.v)
	p := len(abs.String()) - 1 - d.scale // power of ten of the first digit
	w := p / 4
	if p < 0 && p%4 != 0 {
		w-- // floor
	}
	// first = floor(|value| / 10^(4w)) = floor(abs × 10^(-scale-4w))
	e := -d.scale - 4*w
	first := new(big.Int)
	if e >= 0 {
		first.Mul(abs, pow10(e))
	} else {
		first.Quo(abs, pow10(-e))
	}
	return w, first.Int64()
}

// avgOf returns sum / count with the scale Postgres' numeric division picks
// (select_div_scale: at least 16 significant digits, at least either input's display scale),
// rounded half away from zero: what avg() over int and numeric columns returns.
func avgOf(sum *decimal, count int64) decimal {
	if sum.nan || sum.inf != 0 {
		return *sum
	}
	cnt := decimal{}
	cnt.v.SetInt64(count)
	w1, f1 := sum.weight()
	w2, f2 := cnt.weight()
	qweight := w1 - w2
	if f1 <= f2 {
		qweight--
	}
	rscale := 16 - qweight*4
	rscale = max(rscale, sum.scale, cnt.scale, 0)
	rscale = min(rscale, 1000)
	// q = sum.v × 10^(rscale - sum.scale) / count, rounded.
	n := new(big.Int).Set(&sum.v)
	if rscale >= sum.scale {
		n.Mul(n, pow10(rscale-sum.scale))
	} else {
		n.Quo(n, pow10(sum.scale-rscale))
	}
	den := big.NewInt(count)
	q, r := new(big.Int).QuoRem(n, den, new(big.Int))
	r2 := new(big.Int).Abs(r)
	r2.Lsh(r2, 1)
	if r2.Cmp(den) >= 0 {
		if n.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	out := decimal{scale: rscale}
	out.v.Set(q)
	return out
}

// formatFloat writes a float as Postgres does with extra_float_digits >= 1 (its default): the
// shortest text that reads back exactly, in exponent form below 1e-4 and from 1e15 (float8)
// or 1e6 (float4) up.
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits) // d.ddde±XX
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp < -4 || exp >= limit {
		sign := "+"
		if exp < 0 {
			sign, exp = "-", -exp
		}
		es := strconv.Itoa(exp)
		if len(es) < 2 {
			es = "0" + es
		}
		return mant + "e" + sign + es
	}
	return strconv.FormatFloat(f, 'f', -1, bits)
}

// cmpDateTime compares dates and timestamps in the ISO DateStyle (the default).
func cmpDateTime(a, b []byte) (int, error) {
	x, err := parseDateTime(a)
	if err != nil {
		return 0, err
	}
	y, err := parseDateTime(b)
	if err != nil {
		return 0, err
	}
	return x.Cmp(y), nil
}

// parseDateTime reads an ISO date, timestamp or timestamptz ("2024-01-02", "2024-01-02
// 03:04:05.5+02", "0044-03-15 BC", "infinity") as microseconds since an epoch, UTC.
func parseDateTime(b []byte) (*big.Int, error) {
	s := string(b)
	switch s {
	case "infinity":
		return new(big.Int).Lsh(big.NewInt(1), 80), nil
	case "-infinity":
		return new(big.Int).Neg(new(big.Int).Lsh(big.NewInt(1), 80)), nil
	}
	bad := func() (*big.Int, error) {
		return nil, fmt.Errorf("read date or timestamp %q: sluice compares them in the ISO DateStyle only", b)
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	i := strings.IndexByte(s, '-')
	if i < 1 || len(s) < i+6 || s[i+3] != '-' {
		return bad()
	}
	year, err1 := strconv.Atoi(s[:i])
	month, err2 := strconv.Atoi(s[i+1 : i+3])
	day, err3 := strconv.Atoi(s[i+4 : i+6])
	if err1 != nil || err2 != nil || err3 != nil {
		return bad()
	}
	if bc {
		year = 1 - year
	}
	s = s[i+6:]
	var micros int64
	if s != "" {
		if len(s) < 9 || s[0] != ' ' || s[3] != ':' || s[6] != ':' {
			return bad()
		}
		h, e1 := strconv.Atoi(s[1:3])
		m, e2 := strconv.Atoi(s[4:6])
		sec, e3 := strconv.Atoi(s[7:9])
		if e1 != nil || e2 != nil || e3 != nil {
			return bad()
		}
		micros = (int64(h)*3600 + int64(m)*60 + int64(sec)) * 1e6
		s = s[9:]
		if strings.HasPrefix(s, ".") {
			j := 1
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			frac := s[1:j]
			if len(frac) == 0 || len(frac) > 6 {
				return bad()
			}
			f, _ := strconv.Atoi(frac + strings.Repeat("0", 6-len(frac)))
			micros += int64(f)
			s = s[j:]
		}
		if s != "" {
			// A zone offset: ±HH[:MM[:SS]].
			if s[0] != '+' && s[0] != '-' {
				return bad()
			}
			sign := int64(1)
			if s[0] == '-' {
				sign = -1
			}
			var off int64
			mul := int64(3600)
			for _, part := range strings.Split(s[1:], ":") {
				v, err := strconv.Atoi(part)
				if err != nil || len(part) != 2 || mul == 0 {
					return bad()
				}
				off += int64(v) * mul
				mul /= 60
			}
			micros -= sign * off * 1e6
		}
	}
	days := daysFromCivil(int64(year), int64(month), int64(day))
	r := big.NewInt(days)
	r.Mul(r, big.NewInt(86400e6))
	return r.Add(r, big.NewInt(micros)), nil
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date with an
// astronomical year (1 BC is year 0).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// binaryComparator returns the comparator for binary values of a type OID, or nil. Binary
// values are what Postgres' send functions write: big-endian integers, IEEE floats, numeric's
// base-10000 digits, dates as days and timestamps and times as microseconds (infinity as the
// integer's extremes), text as its bytes, uuid as its 16 bytes, bool as one byte.
func binaryComparator(oid uint32) comparator {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidDate, oidTime, oidTimestamp, oidTimestamptz:
		return func(a, b []byte) (int, error) {
			x, err := binaryInt(a)
			if err != nil {
				return 0, err
			}
			y, err := binaryInt(b)
			if err != nil {
				return 0, err
			}
			return cmp3(x < y, x > y), nil
		}
	case oidOID:
		return func(a, b []byte) (int, error) {
			if len(a) != 4 || len(b) != 4 {
				return 0, fmt.Errorf("read binary oid: %d and %d bytes", len(a), len(b))
			}
			x, y := binary.BigEndian.Uint32(a), binary.BigEndian.Uint32(b)
			return cmp3(x < y, x > y), nil
		}
	case oidFloat4, oidFloat8:
		return func(a, b []byte) (int, error) {
			x, err := binaryFloat(a)
			if err != nil {
				return 0, err
			}
			y, err := binaryFloat(b)
			if err != nil {
				return 0, err
			}
			return cmpFloats(x, y), nil
		}
	case oidNumeric:
		return func(a, b []byte) (int, error) {
			x, err := decodeNumeric(a)
			if err != nil {
				return 0, err
			}
			y, err := decodeNumeric(b)
			if err != nil {
				return 0, err
			}
			return x.cmp(&y), nil
		}
	case oidText, oidVarchar, oidName, oidUUID, oidBool:
		return func(a, b []byte) (int, error) { return bytes.Compare(a, b), nil }
	case oidBpchar:
		return func(a, b []byte) (int, error) {
			return bytes.Compare(bytes.TrimRight(a, " "), bytes.TrimRight(b, " ")), nil
		}
	}
	return nil
}

// binaryInt reads a binary int2, int4 or int8 (by its length), or a date (int4), time or
// timestamp (int8).
func binaryInt(b []byte) (int64, error) {
	switch len(b) {
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 8:
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("read binary integer: %d bytes", len(b))
}

// binaryFloat reads a binary float4 or float8 (by its length).
func binaryFloat(b []byte) (float64, error) {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("read binary float: %d bytes", len(b))
}

// cmpFloats orders floats as Postgres does: NaN above everything, -0 equal to 0.
func cmpFloats(x, y float64) int {
	xn, yn := math.IsNaN(x), math.IsNaN(y)
	switch {
	case xn && yn:
		return 0
	case xn:
		return 1
	case yn:
		return -1
	}
	return cmp3(x < y, x > y)
}

// Signs of a binary numeric.
const (
	numericPos    = 0x0000
	numericNeg    = 0x4000
	numericNaN    = 0xC000
	numericPInf   = 0xD000
	numericNInf   = 0xF000
	numericDigits = 10000
)

// decodeNumeric reads a binary numeric: ndigits, weight, sign and dscale (16 bits each), then
// ndigits base-10000 digits, the first of weight `weight`.
func decodeNumeric(b []byte) (decimal, error) {
	var d decimal
	if len(b) < 8 {
		return d, fmt.Errorf("read binary numeric: %d bytes", len(b))
	}
	n := int(binary.BigEndian.Uint16(b))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(binary.BigEndian.Uint16(b[6:]))
	if len(b) != 8+2*n {
		return d, fmt.Errorf("read binary numeric: %d bytes for %d digits", len(b), n)
	}
	switch sign {
	case numericNaN:
		d.nan = true
		return d, nil
	case numericPInf:
		d.inf = 1
		return d, nil
	case numericNInf:
		d.inf = -1
		return d, nil
	case numericPos, numericNeg:
	default:
		return d, fmt.Errorf("read binary numeric: sign %#x", sign)
	}
	var total big.Int
	base := big.NewInt(numericDigits)
	for i := range n {
		dig := binary.BigEndian.Uint16(b[8+2*i:])
		if dig >= numericDigits {
			return d, fmt.Errorf("read binary numeric: digit %d", dig)
		}
		total.Mul(&total, base)
		total.Add(&total, big.NewInt(int64(dig)))
	}
	// total × 10^e is the value, e the power of ten of the last digit.
	e := 4 * (weight - (n - 1))
	switch {
	case n == 0:
		d.scale = dscale
	case e+dscale >= 0:
		total.Mul(&total, pow10(e+dscale))
		d.scale = dscale
	default:
		d.scale = -e // more fractional digits than the display scale: keep them all
		if q, r := new(big.Int).QuoRem(&total, pow10(-e-dscale), new(big.Int)); r.Sign() == 0 {
			total.Set(q)
			d.scale = dscale
		}
	}
	if sign == numericNeg {
		total.Neg(&total)
	}
	d.v.Set(&total)
	return d, nil
}

// appendNumeric appends d in numeric's binary format, as Postgres' numeric_send writes it:
// the display scale is d's scale, leading and trailing zero digits are left out, and zero has
// no digits, weight 0 and a positive sign.
func appendNumeric(dst []byte, d *decimal) []byte {
	var sign uint16
	switch {
	case d.nan:
		sign = numericNaN
	case d.inf > 0:
		sign = numericPInf
	case d.inf < 0:
		sign = numericNInf
	}
	if sign != 0 {
		return append(dst, 0, 0, 0, 0, byte(sign>>8), byte(sign), 0, 0)
	}
	if d.v.Sign() < 0 {
		sign = numericNeg
	}
	digits := new(big.Int).Abs(&d.v).String()
	if digits == "0" {
		digits = ""
	}
	scale := max(d.scale, 0)
	intPart, frac := "", ""
	if len(digits) > scale {
		intPart, frac = digits[:len(digits)-scale], digits[len(digits)-scale:]
	} else {
		frac = strings.Repeat("0", scale-len(digits)) + digits
	}
	if r := len(intPart) % 4; r != 0 {
		intPart = strings.Repeat("0", 4-r) + intPart
	}
	if r := len(frac) % 4; r != 0 {
		frac += strings.Repeat("0", 4-r)
	}
	all := intPart + frac
	groups := make([]uint16, 0, len(all)/4)
	for i := 0; i < len(all); i += 4 {
		v, _ := strconv.Atoi(all[i : i+4])
		groups = append(groups, uint16(v))
	}
	weight := len(intPart)/4 - 1
	for len(groups) > 0 && groups[0] == 0 {
		groups = groups[1:]
		weight--
	}
	for len(groups) > 0 && groups[len(groups)-1] == 0 {
		groups = groups[:len(groups)-1]
	}
	if len(groups) == 0 {
		weight, sign = 0, numericPos
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(groups)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
	dst = binary.BigEndian.AppendUint16(dst, sign)
	dst = binary.BigEndian.AppendUint16(dst, uint16(d.scale))
	for _, g := range groups {
		dst = binary.BigEndian.AppendUint16(dst, g)
	}
	return dst
}
