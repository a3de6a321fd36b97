package v1alpha1

// SecretKeyRef returns the Secret key that holds the password and the field
// path that named it (for error messages), whichever of QScaler's two forms
// was used: secret, or the older valueFrom.secretKeyRef. It returns nil when
// the password is inline or absent; then Value is the password ("" = none).
// The API allows at most one form; should both reach a client unvalidated,
// secret wins, as it is the form QScaler documents.
func (p *Password) SecretKeyRef() (*SecretKey, string) {
	switch {
	case p == nil:
		return nil, ""
	case p.Secret != nil:
		return p.Secret, "spec.config.password.secret"
	case p.ValueFrom != nil:
		return &p.ValueFrom.SecretKeyRef, "spec.config.password.valueFrom.secretKeyRef"
	default:
		return nil, ""
	}
}
