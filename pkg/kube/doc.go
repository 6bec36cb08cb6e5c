// Package kube is epair's Kubernetes node agent, run by
// `epair daemon --kubernetes` next to the datapath daemon. It installs the
// CNI binaries on the host, writes the node's conflist from its podCIDRs,
// keeps one route per other node's podCIDR via that node's InternalIP,
// masquerades pod traffic leaving the cluster, and serves /healthz and
// /readyz.
//
// The agent is level-based: every Node event (and a periodic resync)
// recomputes everything from the informer's cache, so a missed or
// reordered event cannot leave stale state behind. It only acts once the
// cache has synced: while the apiserver is unreachable the reflector retries
// with backoff and the routes, the conflist and the masquerade rules stay
// as they are.
package kube
