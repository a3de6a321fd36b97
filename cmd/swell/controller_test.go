package main

import (
	"testing"
)

// TestControllerEgressBrokerPrivateFlag: --egress-broker-private defaults
// to true (brokers reach the private ranges); false, with or without the
// =, makes the manager's broker policy strict.
func TestControllerEgressBrokerPrivateFlag(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		wantStrict bool
		wantErr    bool
	}{
		{args: nil, wantStrict: false},
		{args: []string{"--egress-broker-private"}, wantStrict: false},
		{args: []string{"--egress-broker-private=true"}, wantStrict: false},
		{args: []string{"--egress-broker-private=false"}, wantStrict: true},
		{args: []string{"--egress-broker-private=nope"}, wantErr: true},
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
		if o.manager.EgressBrokerStrict != tc.wantStrict {
			t.Errorf("%q: EgressBrokerStrict = %t, want %t", tc.args, o.manager.EgressBrokerStrict, tc.wantStrict)
		}
		if def := cmd.Flags().Lookup("egress-broker-private").DefValue; def != "true" {
			t.Errorf("default %q, want true", def)
		}
	}
}

// TestControllerRequireSecretAddressesFlag: --require-secret-addresses
// defaults to false (Secrets without swell.dev/allowed-addresses keep
// working); set, the manager refuses them.
func TestControllerRequireSecretAddressesFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    bool
		wantErr bool
	}{
		{args: nil, want: false},
		{args: []string{"--require-secret-addresses"}, want: true},
		{args: []string{"--require-secret-addresses=true"}, want: true},
		{args: []string{"--require-secret-addresses=false"}, want: false},
		{args: []string{"--require-secret-addresses=nope"}, wantErr: true},
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
		if o.manager.RequireSecretAddresses != tc.want {
			t.Errorf("%q: RequireSecretAddresses = %t, want %t", tc.args, o.manager.RequireSecretAddresses, tc.want)
		}
		if def := cmd.Flags().Lookup("require-secret-addresses").DefValue; def != "false" {
			t.Errorf("default %q, want false", def)
		}
	}
}
