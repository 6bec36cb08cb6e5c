module github.com/epair-cni/epair

go 1.26.8

require (
	github.com/containernetworking/plugins v1.9.1
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.50.0
)

require github.com/containernetworking/cni v1.3.1 // indirect
