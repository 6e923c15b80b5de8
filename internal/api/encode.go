package api

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/coda-serverless/coda/internal/entity"
)

// The invoke path writes activation records by hand: encoding/json would reflect over the record
// and re-validate and copy every raw JSON value (the result may be large). Raw values come from
// the controller and the store, which only hold valid JSON.

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping as encoding/json does except for <, > and &
// (OpenWhisk does not escape them either).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not valid JavaScript source
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendRaw appends a raw JSON value, or def when it is empty.
func appendRaw(b []byte, raw json.RawMessage, def string) []byte {
	if len(raw) == 0 {
		return append(b, def...)
	}
	return append(b, raw...)
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, "true"...)
	}
	return append(b, "false"...)
}

// appendKeyValues appends [{"key":…,"value":…},…]; never null.
func appendKeyValues(b []byte, kv entity.KeyValues) []byte {
	b = append(b, '[')
	for i, p := range kv {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"key":`...)
		b = appendString(b, p.Key)
		b = append(b, `,"value":`...)
		b = appendRaw(b, p.Value, "null")
		b = append(b, '}')
	}
	return append(b, ']')
}

// appendResponse appends {status, statusCode, success, result}, as OpenWhisk's extended
// response JSON (GET …/activations/{id}/result returns exactly this).
func appendResponse(b []byte, r *entity.Response) []byte {
	b = append(b, `{"status":`...)
	b = appendString(b, r.Status)
	b = append(b, `,"statusCode":`...)
	b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	b = append(b, `,"success":`...)
	b = appendBool(b, r.Success)
	if len(r.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, r.Result...)
	}
	return append(b, '}')
}

// appendActivation appends an activation record in OpenWhisk's shape. As OpenWhisk's
// toExtendedJson, "end" is left out while the activation has not ended (in Coda: while it is in
// its background phase). summary writes the list view's reduced record instead (no subject,
// response or logs), as OpenWhisk lists activations without docs=true.
func appendActivation(b []byte, a *entity.Activation, summary bool) []byte {
	b = append(b, `{"namespace":`...)
	b = appendString(b, a.Namespace)
	b = append(b, `,"name":`...)
	b = appendString(b, a.Name)
	b = append(b, `,"version":`...)
	b = appendString(b, a.Version)
	if !summary {
		b = append(b, `,"subject":`...)
		b = appendString(b, a.Subject)
	}
	b = append(b, `,"activationId":`...)
	b = appendString(b, a.ActivationID)
	b = append(b, `,"start":`...)
	b = strconv.AppendInt(b, a.Start, 10)
	if a.End != 0 {
		b = append(b, `,"end":`...)
		b = strconv.AppendInt(b, a.End, 10)
	}
	if a.End != 0 || (!summary && a.Duration != 0) {
		b = append(b, `,"duration":`...)
		b = strconv.AppendInt(b, a.Duration, 10)
	}
	// OpenWhisk's summary has statusCode once the activation ended; Coda knows it at the
	// response already, which comes first.
	if !summary || a.End != 0 || a.Response.Status != "" {
		code := a.StatusCode
		if a.Response.Status != "" {
			code = a.Response.StatusCode
		}
		b = append(b, `,"statusCode":`...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	if !summary {
		b = append(b, `,"response":`...)
		b = appendResponse(b, &a.Response)
		b = append(b, `,"logs":[`...)
		for i, l := range a.Logs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, l)
		}
		b = append(b, ']')
	}
	b = append(b, `,"annotations":`...)
	b = appendKeyValues(b, a.Annotations)
	b = append(b, `,"publish":`...)
	b = appendBool(b, a.Publish)
	return append(b, '}')
}

// appendActivationID appends {"activationId": id}.
func appendActivationID(b []byte, id string) []byte {
	b = append(b, `{"activationId":`...)
	b = appendString(b, id)
	return append(b, '}')
}
