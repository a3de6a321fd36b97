package podautoscaler

import (
	"strings"
	"testing"
)

func TestExprReplicas(t *testing.T) {
	cases := []struct {
		src  string
		vars Vars
		want int32
	}{
		{"ceil(value / 10)", Vars{Value: 35}, 4},
		{"value / 10", Vars{Value: 31}, 4},
		{"floor(value/10)", Vars{Value: 39}, 3},
		{"max(1, min(replicas + 2, value))", Vars{Value: 10, Replicas: 3}, 5},
		{"-(-value) * 2 - 1", Vars{Value: 3}, 5},
		{"round(2.5)", Vars{}, 3},
		{" ( value ) ", Vars{Value: 7}, 7},
	}
	for _, c := range cases {
		e, err := ParseExpr(c.src)
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		got, err := e.Replicas(c.vars)
		if err != nil || got != c.want {
			t.Errorf("%q with %+v = %d, %v; want %d", c.src, c.vars, got, err, c.want)
		}
	}
}

func TestExprRejects(t *testing.T) {
	for src, want := range map[string]string{
		"":            "unexpected end",
		"value +":     "unexpected end",
		"os.exit(1)":  "unknown variable",
		"foo":         "unknown variable",
		"exec(value)": "unknown function",
		"ceil(1, 2)":  "one argument",
		"min(1)":      "two or more",
		"(value":      "want \")\"",
		"value; 1":    "unexpected",
		"1..2":        "unexpected",
		strings.Repeat("(", 40) + "1" + strings.Repeat(")", 40): "nested",
	} {
		if _, err := ParseExpr(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExpr(%q) = %v, want error containing %q", src, err, want)
		}
	}
}

func TestExprResultMustBeACount(t *testing.T) {
	for src, v := range map[string]Vars{"value / replicas": {Value: 1}, "value - 5": {Value: 1}, "value * 1000000000 * 1000000000": {Value: 1}} {
		e, err := ParseExpr(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if n, err := e.Replicas(v); err == nil {
			t.Errorf("%q with %+v = %d, want an error", src, v, n)
		}
	}
}
