// Package archive safely unpacks user-supplied zip files (action code for
// the blackbox kind and zipped nodejs/python actions). Every archive is
// treated as hostile: entries may try to escape the destination, smuggle in
// symlinks or device nodes, or decompress into far more data than they
// declare.
package archive

import "fmt"

// Limits bounds what an archive may expand to. A field that is zero or
// negative takes its value from DefaultLimits, so a zero Limits is safe.
type Limits struct {
	MaxFiles int   // maximum number of entries (files and directories)
	MaxTotal int64 // maximum total uncompressed bytes
	MaxFile  int64 // maximum uncompressed bytes of one file
	MaxRatio int   // maximum uncompressed:compressed ratio of one file above ratioFloor
}

const (
	mib = 1 << 20

	// ratioFloor exempts small files from the ratio check: tiny files of
	// repetitive text legitimately compress very well and cannot hurt.
	ratioFloor = 1 * mib

	// maxNameLen and maxComponentLen mirror Linux PATH_MAX and NAME_MAX, so
	// overlong names are reported as a bad entry rather than an I/O error.
	maxNameLen      = 4095
	maxComponentLen = 255
)

// DefaultLimits are generous for real action code yet keep a hostile
// archive from filling the disk.
func DefaultLimits() Limits {
	return Limits{
		MaxFiles: 10000,
		MaxTotal: 512 * mib,
		MaxFile:  256 * mib,
		MaxRatio: 1000,
	}
}

// withDefaults fills unset fields so a zero Limits never means "unlimited".
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxFiles <= 0 {
		l.MaxFiles = d.MaxFiles
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = d.MaxTotal
	}
	if l.MaxFile <= 0 {
		l.MaxFile = d.MaxFile
	}
	if l.MaxRatio <= 0 {
		l.MaxRatio = d.MaxRatio
	}
	return l
}

// Error reports an archive the caller supplied that is malformed or hostile;
// it is the user's fault (HTTP 400). Failures of the local filesystem are
// returned as other (wrapped) errors instead, so callers can tell them apart
// with errors.As.
type Error struct {
	Entry  string // raw entry name as stored in the zip; empty for whole-archive problems
	Reason string
}

func (e *Error) Error() string {
	if e.Entry == "" {
		return "zip: " + e.Reason
	}
	return fmt.Sprintf("zip entry %q: %s", e.Entry, e.Reason)
}
