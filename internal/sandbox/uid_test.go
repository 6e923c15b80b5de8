package sandbox

import "testing"

func TestUIDPool(t *testing.T) {
	p := newUIDPool(100, 3)
	seen := map[int]bool{}
	for range 3 {
		uid, err := p.get()
		if err != nil || uid < 100 || uid >= 103 || seen[uid] {
			t.Fatalf("get = %d, %v (seen %v)", uid, err, seen)
		}
		seen[uid] = true
	}
	if _, err := p.get(); err == nil {
		t.Fatal("exhausted pool handed out a uid")
	}
	p.put(101)
	if uid, err := p.get(); err != nil || uid != 101 {
		t.Errorf("after put(101): %d, %v", uid, err)
	}
}

func TestUIDPoolRoundRobin(t *testing.T) {
	p := newUIDPool(100, 3)
	a, _ := p.get()
	p.put(a)
	if b, _ := p.get(); b == a {
		t.Errorf("uid %d reused at once while others were free", a)
	}
}
