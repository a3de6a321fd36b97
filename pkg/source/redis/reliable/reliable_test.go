package reliable

import "testing"

func TestSplitMember(t *testing.T) {
	for member, want := range map[string][2]string{
		"ns/qw/qw-abc": {"ns/qw", "qw-abc"},
		"ns/qw/":       {},
		"qw/pod":       {},
		"pod":          {},
		"/qw/pod":      {},
		"ns//pod":      {},
	} {
		owner, pod, err := SplitMember(member)
		if want == ([2]string{}) {
			if err == nil {
				t.Errorf("SplitMember(%q) = %q, %q; want an error", member, owner, pod)
			}
			continue
		}
		if err != nil || owner != want[0] || pod != want[1] {
			t.Errorf("SplitMember(%q) = %q, %q, %v; want %q, %q", member, owner, pod, err, want[0], want[1])
		}
	}
}

func TestKeysAreNamespacedByQWorker(t *testing.T) {
	a, b := Processing("q", Member(Owner("ns1", "qw"), "p")), Processing("q", Member(Owner("ns2", "qw"), "p"))
	if a == b {
		t.Fatalf("two namespaces share processing key %q", a)
	}
	if got := Processing("q", "ns/qw/p"); got != "q:swell:processing:ns/qw/p" {
		t.Fatalf("Processing = %q; the Python SDK writes q:swell:processing:ns/qw/p", got)
	}
}
