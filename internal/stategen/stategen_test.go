package stategen

import (
	"testing"

	"github.com/qvm-dev/qvm/core"
)

// The generated state has the requested size and survives a save/load.
func TestGenerate(t *testing.T) {
	a, err := Generate("/var/lib/qubes", 200)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(a.Domains()); got != 201 {
		t.Fatalf("%d domains", got)
	}
	b, err := core.Parse(a.Marshal(), "gen", "/var/lib/qubes", core.Host{})
	if err != nil {
		t.Fatal(err)
	}
	if string(b.Marshal()) != string(a.Marshal()) {
		t.Fatal("generated state is not stable across save/load")
	}
}

func BenchmarkParse1000(b *testing.B) {
	a, err := Generate("/var/lib/qubes", 1000)
	if err != nil {
		b.Fatal(err)
	}
	data := a.Marshal()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := core.Parse(data, "gen", "/var/lib/qubes", core.Host{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshal1000(b *testing.B) {
	a, err := Generate("/var/lib/qubes", 1000)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a.Marshal()
	}
}
