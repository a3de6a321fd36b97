package v1alpha1

import "testing"

func TestPasswordSecretKeyRef(t *testing.T) {
	sk := &SecretKey{Name: "redis", Key: "password"}
	old := &ValueFrom{SecretKeyRef: SecretKey{Name: "old", Key: "pw"}}
	cases := []struct {
		name      string
		p         *Password
		wantName  string
		wantField string
	}{
		{"nil", nil, "", ""},
		{"empty (QScaler's password: {})", &Password{}, "", ""},
		{"inline", &Password{Value: "x"}, "", ""},
		{"secret", &Password{Secret: sk}, "redis", "spec.config.password.secret"},
		{"valueFrom", &Password{ValueFrom: old}, "old", "spec.config.password.valueFrom.secretKeyRef"},
		{"both: secret wins", &Password{Secret: sk, ValueFrom: old}, "redis", "spec.config.password.secret"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref, field := c.p.SecretKeyRef()
			if field != c.wantField {
				t.Errorf("field = %q, want %q", field, c.wantField)
			}
			if (ref == nil) != (c.wantName == "") || (ref != nil && ref.Name != c.wantName) {
				t.Errorf("ref = %+v, want Secret %q", ref, c.wantName)
			}
		})
	}
}
