// Package brokersource hands out queue sources for ScalerConfigs
// (quickube.com/v1alpha1): one shared broker connection per ScalerConfig,
// credentials and TLS material read from Secrets, a new connection when the
// spec or a Secret changes. The QWorker, ScalerConfig and PodAutoscaler
// reconcilers all measure through one Sources, so a broker sees one
// connection per ScalerConfig however many objects use it.
package brokersource
