package main

import (
	"testing"
)

// TestControllerSecurityFlags: each boolean security flag of the controller
// has its documented default, accepts the forms pflag does, refuses a value
// that is not a boolean, and lands in the manager's options.
// --egress-broker-private defaults to true (brokers reach the private
// ranges; false makes the broker policy strict); --require-secret-addresses
// defaults to false (Secrets without swell.dev/allowed-addresses keep
// working; set, the manager refuses them).
func TestControllerSecurityFlags(t *testing.T) {
	flags := []struct {
		name, def string
		// option reads what the flag set in the manager's options.
		option func(*controllerOptions) bool
		// wantOption maps the flag's value to the option's.
		wantOption func(flag bool) bool
	}{
		{"egress-broker-private", "true", func(o *controllerOptions) bool { return o.manager.EgressBrokerStrict }, func(f bool) bool { return !f }},
		{"require-secret-addresses", "false", func(o *controllerOptions) bool { return o.manager.RequireSecretAddresses }, func(f bool) bool { return f }},
	}
	for _, f := range flags {
		defValue := f.def == "true"
		for _, tc := range []struct {
			args    []string
			flag    bool
			wantErr bool
		}{
			{args: nil, flag: defValue},
			{args: []string{"--" + f.name}, flag: true},
			{args: []string{"--" + f.name + "=true"}, flag: true},
			{args: []string{"--" + f.name + "=false"}, flag: false},
			{args: []string{"--" + f.name + "=nope"}, wantErr: true},
		} {
			o := &controllerOptions{}
			cmd := newControllerCmdWith(o)
			err := cmd.ParseFlags(tc.args)
			if (err != nil) != tc.wantErr {
				t.Fatalf("%q: ParseFlags error %v, want error %t", tc.args, err, tc.wantErr)
			}
			if err != nil {
				continue
			}
			if got, want := f.option(o), f.wantOption(tc.flag); got != want {
				t.Errorf("%q: option = %t, want %t", tc.args, got, want)
			}
			if def := cmd.Flags().Lookup(f.name).DefValue; def != f.def {
				t.Errorf("--%s default %q, want %s", f.name, def, f.def)
			}
		}
	}
}
