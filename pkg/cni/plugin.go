package cni

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
)

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// timeout bounds one plugin invocation's talk with the daemon.
const timeout = 60 * time.Second

// Main runs the plugin; the binary calls it when CNI_COMMAND is set.
func Main(about string) {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: reported("ADD", cmdAdd), Del: reported("DEL", cmdDel), Check: reported("CHECK", cmdCheck),
		GC: cmdGC, Status: cmdStatus,
	}, Versions, about)
}

// reportTimeout bounds the report of a command's result: the runtime is
// waiting for the plugin, and the result is already decided.
const reportTimeout = 2 * time.Second

// reported runs cmd and then tells the daemon how it ended (its code, 0
// for success), so that epair_cni_commands_total counts what the runtime
// saw, failures after the daemon's part included (IPAM, host and pod
// setup). The report is best effort and changes nothing of the result:
// when the daemon cannot be reached (code 11, among others) it is not
// counted, and a config that does not parse names no daemon to tell.
func reported(command string, cmd func(*skel.CmdArgs) error) func(*skel.CmdArgs) error {
	return func(args *skel.CmdArgs) error {
		err := cmd(args)
		conf, cerr := loadConf(args.StdinData)
		if cerr != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
		defer cancel()
		client.New(conf.Socket).ReportCNIResult(ctx, api.CNIResult{Command: command, Code: codeOf(err)})
		return err
	}
}

// codeOf is the CNI error code the runtime sees for err: skel passes a
// *types.Error on and makes anything else 999.
func codeOf(err error) uint {
	var te *types.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &te):
		return te.Code
	}
	return types.ErrInternal
}

func newContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), timeout)
}

// daemonError turns a failure to talk to the daemon into a CNI error: an
// unreachable daemon is transient (11, try again later).
func daemonError(c *client.Client, what string, err error) *types.Error {
	if errors.Is(err, client.ErrNotRoot) {
		return impostorError(c, err)
	}
	if errors.Is(err, client.ErrUnreachable) {
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("epair daemon not reachable at %s: start `epair daemon` (or the epair DaemonSet) on this node", c.Socket()), err.Error())
	}
	var ae *client.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusRequestEntityTooLarge) {
		return types.NewError(types.ErrInvalidNetworkConfig, what+": "+ae.Message, "")
	}
	return types.NewError(ErrPair, what+": "+err.Error(), "")
}

// impostorError: what answers on the socket is not root's, so nothing was
// sent to it. Never "try again later": retrying would not help, and the
// socket may have been replaced by an unprivileged user.
func impostorError(c *client.Client, err error) *types.Error {
	return types.NewError(ErrImpostor,
		fmt.Sprintf("refusing to talk to %s: it is not served by root (was the socket replaced?); check who owns it and restart the epair daemon", c.Socket()), err.Error())
}

// findPair returns the daemon's pair for an attachment, or nil.
func findPair(ctx context.Context, c *client.Client, network, containerID, ifName string) (*api.Pair, error) {
	ps, err := c.ListPairs(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		if ps[i].Owner.Matches(network, containerID, ifName) {
			return &ps[i], nil
		}
	}
	return nil, nil
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	ctx, cancel := newContext()
	defer cancel()
	c := client.New(conf.Socket)
	st, err := c.Status(ctx)
	if errors.Is(err, client.ErrNotRoot) {
		e := impostorError(c, err)
		e.Code = types.ErrPluginNotAvailable
		return e
	}
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable,
			fmt.Sprintf("epair daemon not reachable at %s: start `epair daemon` on this node", conf.Socket), err.Error())
	}
	if !st.CanCreate {
		return types.NewError(types.ErrPluginNotAvailable,
			fmt.Sprintf("epair daemon at %s cannot create pairs: %s", conf.Socket, st.Problem), "")
	}
	return delegateStatus(ctx, conf, args.StdinData)
}
