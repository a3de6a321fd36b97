// Package nodepoolscaler reconciles NodePoolScaler (swell.dev/v1alpha1): the
// in-cluster form of `swell nodepool`. Each object gets its own
// [nodepool.Scaler] built from the spec (translated to kubescaler keys and
// decoded by the same code as the config file), so the controller and the
// command make the same decisions: informers give the snapshot, [nodepool.Plan]
// decides, the scaler carries it out through the provider. The reconciler
// runs one pass per reconcile, reports it once in status, and turns every
// action into an event on the object.
package nodepoolscaler
