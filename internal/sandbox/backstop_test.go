package sandbox

import (
	"reflect"
	"strings"
	"testing"
)

func TestProcNetAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:18EB":                         "127.0.0.1:6379",
		"00000000000000000000000001000000:1F90": "[::1]:8080",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80", // v4-mapped
		"garbage":                               "garbage",
	} {
		if got := procNetAddr(in); got != want {
			t.Errorf("procNetAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSendQueues(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000080:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:18EB 01 000004B0:00000000 01:00000014 00000000 60000        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:18EB 01 00000000:00000000 00:00000000 00000000 60000        0 333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:9C42 0100007F:18EB 01 00000010:00000000 00:00000000 00000000 60000        0 444 1 0000000000000000 20 4 30 10 -1
`
	// 111 is a listener (its tx_queue is the backlog), 333 is drained, 444 belongs to
	// another process.
	got := sendQueues(strings.NewReader(table), map[uint64]bool{111: true, 222: true, 333: true})
	want := []sendQueue{{remote: "127.0.0.1:6379", bytes: 1200}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
