// Package crd embeds the generated CustomResourceDefinitions so that
// binaries (swell-dev) can install them without a checkout at hand.
package crd

import "embed"

// Bases holds bases/*.yaml, the CRDs controller-gen writes.
//
//go:embed bases/*.yaml
var Bases embed.FS
