package entity

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Activation status codes and strings, as OpenWhisk records them.
const (
	StatusSuccess          = 0
	StatusApplicationError = 1
	StatusDeveloperError   = 2
	StatusInternalError    = 3
)

// StatusString is the response.status text for a status code.
func StatusString(code int) string {
	switch code {
	case StatusSuccess:
		return "success"
	case StatusApplicationError:
		return "application error"
	case StatusDeveloperError:
		return "action developer error"
	default:
		return "whisk internal error"
	}
}

// Response is the activation's outcome.
type Response struct {
	Status     string          `json:"status"`
	StatusCode int             `json:"statusCode"`
	Success    bool            `json:"success"`
	Result     json.RawMessage `json:"result,omitempty"`
}

// NewResponse builds a response with its status text and success flag derived from code.
func NewResponse(code int, result json.RawMessage) Response {
	return Response{Status: StatusString(code), StatusCode: code, Success: code == StatusSuccess, Result: result}
}

// ErrorResult is {"error": msg}, the result of every failed activation.
func ErrorResult(msg string) json.RawMessage {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

// Termination says how an activation ended (the "termination" annotation).
type Termination struct {
	Mode    string   `json:"mode"`
	Cause   string   `json:"cause"` // settled, deadline, crash, coupled, oom, interrupted
	Pending []string `json:"pending"`
}

// Activation is one invocation's record. End is the activation's termination, not its response.
type Activation struct {
	Namespace    string    `json:"namespace"`
	Name         string    `json:"name"`
	Version      string    `json:"version"`
	Subject      string    `json:"subject"`
	ActivationID string    `json:"activationId"`
	Start        int64     `json:"start"`
	End          int64     `json:"end"`
	Duration     int64     `json:"duration"`
	StatusCode   int       `json:"statusCode"`
	Response     Response  `json:"response"`
	Logs         []string  `json:"logs"`
	Annotations  KeyValues `json:"annotations"`
	Publish      bool      `json:"publish"`
}

// NewActivationID returns a 32-hex-digit id whose first 12 digits are the time in ms, so ids
// sort by creation time (cheap ordered inserts and "newest first" listing).
func NewActivationID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	for i := 5; i >= 0; i-- {
		b[i] = byte(ms)
		ms >>= 8
	}
	_, _ = rand.Read(b[6:])
	return hex.EncodeToString(b[:])
}

// LogLine formats one log line as OpenWhisk does: "<RFC3339 ms> stdout: text".
func LogLine(t time.Time, stream, text string) string {
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z") + " " + stream + ": " + text
}
