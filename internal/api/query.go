package api

import (
	"net/url"
	"strconv"
	"strings"
)

// queryParam returns the first value of key in a raw query, without building url.Values (the
// invoke path reads two or three parameters and should not allocate a map for them).
func queryParam(raw, key string) (string, bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(pair, "=")
		if strings.ContainsAny(k, "%+") {
			uk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = uk
		}
		if k != key {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			uv, err := url.QueryUnescape(v)
			if err != nil {
				return v, true
			}
			v = uv
		}
		return v, true
	}
	return "", false
}

// queryBool parses a boolean parameter as akka-http does (true/yes/on/1, false/no/off/0);
// anything else is a 400.
func queryBool(raw, key string, def bool) (bool, string) {
	v, ok := queryParam(raw, key)
	if !ok {
		return def, ""
	}
	switch strings.ToLower(v) {
	case "true", "yes", "on", "1":
		return true, ""
	case "false", "no", "off", "0":
		return false, ""
	}
	return def, "The query parameter '" + key + "' was malformed:\n'" + v + "' is not a valid Boolean value"
}

// List bounds, as OpenWhisk's Collection.DEFAULT_LIST_LIMIT and MAX_LIST_LIMIT.
const (
	defaultListLimit = 30
	maxListLimit     = 200
)

// listParams parses skip and limit as OpenWhisk does: limit 0 means the maximum; out-of-range
// values are a 400 with OpenWhisk's message.
func listParams(raw, collection string) (skip, limit int, msg string) {
	limit = defaultListLimit
	if v, ok := queryParam(raw, "limit"); ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			return 0, 0, "The value '" + v + "' is not an integer for " + collection + "."
		case n == 0:
			limit = maxListLimit
		case n < 0 || n > maxListLimit:
			return 0, 0, "The value '" + v + "' is not in the range of 0 to " + strconv.Itoa(maxListLimit) + " for " + collection + "."
		default:
			limit = n
		}
	}
	if v, ok := queryParam(raw, "skip"); ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			return 0, 0, "The value '" + v + "' is not an integer for " + collection + "."
		case n < 0:
			return 0, 0, "The value '" + v + "' is not greater than or equal to 0 for " + collection + "."
		}
		skip = n
	}
	return skip, limit, ""
}
