// Package cli implements the epair command line: the daemon and the
// FreeBSD-`ifconfig epair create`-like pair commands.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/epair-cni/epair/pkg/api"
	"github.com/epair-cni/epair/pkg/client"
	"github.com/epair-cni/epair/pkg/daemon"
	"github.com/epair-cni/epair/pkg/datapath"
	"github.com/epair-cni/epair/pkg/epair"
	"github.com/epair-cni/epair/pkg/kube/kubeopts"
	"github.com/epair-cni/epair/pkg/metrics"
	"github.com/epair-cni/epair/pkg/state"
	"github.com/epair-cni/epair/pkg/version"
)

const usage = `usage: epair COMMAND [flags]

commands:
  daemon     run the node agent (owns the TAPs, runs the datapath)
  pair add   --a-netns PATH [--b-netns PATH] [--a-name NAME] [--mtu N] [--unit N] [--queues N]
  pair del   PAIR
  pair list
  pair show  PAIR
  stats      PAIR
  capture    PAIR [--end a|b] [-c N] [-w FILE|-] [--drops] [--pcapng] [-s SNAPLEN] [-B KiB]
             the frames crossing the pair as pcap/pcapng: epair capture web-0 -w - | tcpdump -nr -
  version

PAIR is a unit number, an end's name (epair3b, eth0), or the pod of the
pair as namespace/name or name (one that several pairs answer to is an
error listing them).

Every command that talks to the daemon takes --socket PATH (default ` + api.DefaultSocket + `).
`

// errUsage marks errors that are the caller's words being off.
var errUsage = errors.New("usage")

// errHelpShown: a command's -h printed its flags; nothing more to say.
var errHelpShown = errors.New("help shown")

// Main runs the CLI and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	err := run(args, stdout, stderr)
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, usage)
		return 0
	}
	if errors.Is(err, errHelpShown) {
		return 0
	}
	fmt.Fprintf(stderr, "epair: %v\n", err)
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	return 1
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command given", errUsage)
	}
	switch args[0] {
	case "daemon":
		return runDaemon(args[1:])
	case "pair":
		if len(args) < 2 {
			return fmt.Errorf("%w: pair needs add, del, list or show", errUsage)
		}
		return runPair(args[1], args[2:], stdout)
	case "stats":
		return runGet(args[1:], stdout, func(ctx context.Context, c *client.Client, id string) (any, error) {
			return c.Stats(ctx, id)
		})
	case "capture":
		return runCapture(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, version.Version)
		return nil
	case "-h", "--help", "help":
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	sock := fs.String("socket", api.DefaultSocket, "daemon socket")
	return fs, sock
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// The command's own flags, not the general usage.
			fmt.Fprintf(os.Stdout, "usage: epair %s [flags]\n\nflags:\n", fs.Name())
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return errHelpShown
		}
		return fmt.Errorf("%w: %s: %w", errUsage, fs.Name(), err)
	}
	return nil
}

func runDaemon(args []string) error {
	fs, sock := newFlags("daemon")
	stateDir := fs.String("state-dir", api.DefaultStateDir, "state directory")
	queues := fs.Int("queues", 1, "queues per end (TAP queues and core workers)")
	qlen := fs.Int("queue-len", epair.DefaultQueueLen, "bound of each receive queue (if_epair RXRSIZE)")
	qbytes := fs.Int("queue-bytes", epair.DefaultQueueBytes, "bound of the buffer bytes of each receive queue (frames are kept in buffers of their size); 0: no byte bound")
	maxBytes := fs.Int64("max-queued-bytes", epair.DefaultMaxQueuedBytes, "bound of the buffer bytes of all queues together")
	policy := fs.String("dispatch", "direct", "dispatch policy: direct or deferred")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	peerPoll := fs.Bool("peer-poll", true, "after writing into a TAP, read its answer at once")
	busyPoll := fs.Duration("busy-poll", 0, "keep polling a queue this long after its last frame (0: sleep at once)")
	lockWait := fs.Duration("lock-wait", state.DefaultLockWait, "how long to wait for the state dir's lock (a daemon killed just now holds it a moment)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at http://HOST:PORT/metrics (HOST an IP address, empty for all); default off")
	kf := kubeFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *lockWait < 0 {
		return fmt.Errorf("%w: --lock-wait must not be negative", errUsage)
	}
	if *metricsAddr != "" {
		if err := metrics.CheckAddr(*metricsAddr); err != nil {
			return fmt.Errorf("%w: --metrics-addr: %w", errUsage, err)
		}
	}
	pol, err := epair.ParsePolicy(*policy)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if *busyPoll < 0 || *busyPoll > time.Second {
		return fmt.Errorf("%w: --busy-poll must be between 0 and 1s", errUsage)
	}
	if *queues < 1 || *queues > daemon.MaxQueues || *qlen < 1 {
		return fmt.Errorf("%w: --queues must be 1..%d and --queue-len at least 1", errUsage, daemon.MaxQueues)
	}
	if *qbytes < 0 || *qbytes > 0 && *qbytes < epair.FrameSize || *maxBytes < int64(epair.FrameSize) {
		return fmt.Errorf("%w: --queue-bytes must be 0 or at least %d (one largest frame), --max-queued-bytes at least %d", errUsage, epair.FrameSize, epair.FrameSize)
	}
	if *qbytes == 0 {
		*qbytes = -1 // the core's "no byte bound"
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("%w: --log-level: %w", errUsage, err)
	}
	opts := daemon.Options{
		Socket: *sock, StateDir: *stateDir, LockWait: *lockWait, MetricsAddr: *metricsAddr,
		Core:     epair.Config{Queues: *queues, QueueLen: *qlen, QueueBytes: *qbytes, MaxQueuedBytes: *maxBytes, Policy: pol},
		Datapath: datapath.Options{PeerPoll: *peerPoll, BusyPoll: *busyPoll},
	}
	var ko *kubeopts.Options
	if kf.enabled {
		if ko, err = kf.options(*sock); err != nil {
			return err
		}
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv})))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if ko == nil {
		return daemon.Run(ctx, opts)
	}
	return Kubernetes(ctx, *ko, func(ctx context.Context, ready func()) error {
		opts.Ready = ready
		return daemon.Run(ctx, opts)
	})
}

func runPair(sub string, args []string, stdout io.Writer) error {
	switch sub {
	case "add", "create":
		return pairAdd(args, stdout)
	case "del", "delete", "destroy":
		return runGet(args, stdout, func(ctx context.Context, c *client.Client, id string) (any, error) {
			return nil, c.DeletePair(ctx, id)
		})
	case "show", "get":
		return runGet(args, stdout, func(ctx context.Context, c *client.Client, id string) (any, error) {
			return c.GetPair(ctx, id)
		})
	case "list", "ls":
		fs, sock := newFlags("pair list")
		if err := parse(fs, args); err != nil {
			return err
		}
		ps, err := client.New(*sock).ListPairs(context.Background())
		if err != nil {
			return err
		}
		return printJSON(stdout, ps)
	}
	return fmt.Errorf("%w: unknown pair command %q", errUsage, sub)
}

func pairAdd(args []string, stdout io.Writer) error {
	fs, sock := newFlags("pair add")
	var req api.CreateRequest
	fs.StringVar(&req.ANetns, "a-netns", "", "network namespace path for the a end (required)")
	fs.StringVar(&req.BNetns, "b-netns", "", "network namespace path for the b end (default: the daemon's)")
	fs.StringVar(&req.AName, "a-name", "", "name of the a end (default epair<n>a)")
	fs.StringVar(&req.AMAC, "a-mac", "", "MAC address of the a end (default: the if_epair rule)")
	fs.IntVar(&req.MTU, "mtu", 1500, fmt.Sprintf("MTU of both ends (%d..%d)", api.MinMTU, api.MaxMTU))
	fs.IntVar(&req.Queues, "queues", 0, "TAP queues per end (default: the daemon's)")
	unit := fs.String("unit", "", "unit number (default: lowest free)")
	ips := fs.String("ips", "", "the a end's addresses, comma-separated (CIDR or bare): turns anti-spoofing on for them")
	spoof := fs.Bool("anti-spoofing", true, "with --ips: drop what the a end sends from another MAC or address")
	var bw api.Bandwidth
	fs.Uint64Var(&bw.IngressRate, "ingress-rate", 0, "shape what the a end receives to this many bit/s (needs --ingress-burst)")
	fs.Uint64Var(&bw.IngressBurst, "ingress-burst", 0, "burst of --ingress-rate, bits")
	fs.Uint64Var(&bw.EgressRate, "egress-rate", 0, "shape what the a end sends to this many bit/s (needs --egress-burst)")
	fs.Uint64Var(&bw.EgressBurst, "egress-burst", 0, "burst of --egress-rate, bits")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: pair add takes no arguments, got %q", errUsage, fs.Args())
	}
	if *ips != "" {
		req.Owner = &api.Owner{IPs: strings.Split(*ips, ",")}
		req.AntiSpoofing = spoof
	}
	if bw != (api.Bandwidth{}) {
		req.Bandwidth = &bw
	}
	if req.ANetns == "" {
		return fmt.Errorf("%w: pair add needs --a-netns PATH (e.g. /var/run/netns/NAME)", errUsage)
	}
	if *unit != "" {
		u, err := strconv.Atoi(*unit)
		if err != nil || u < 0 {
			return fmt.Errorf("%w: --unit %q is not a unit number", errUsage, *unit)
		}
		req.Unit = &u
	}
	p, err := client.New(*sock).CreatePair(context.Background(), &req)
	if err != nil {
		return err
	}
	return printJSON(stdout, p)
}

// runGet parses `[--socket PATH] ID` and prints what fn returns.
func runGet(args []string, stdout io.Writer, fn func(context.Context, *client.Client, string) (any, error)) error {
	fs, sock := newFlags("pair")
	id, err := parsePairArgs(fs, args)
	if err != nil {
		return err
	}
	v, err := fn(context.Background(), client.New(*sock), id)
	if err != nil || v == nil {
		return err
	}
	return printJSON(stdout, v)
}

// parsePairArgs parses fs's flags around one PAIR argument: flags may also
// follow the pair (`epair stats epair0b --socket S`).
func parsePairArgs(fs *flag.FlagSet, args []string) (string, error) {
	if err := parse(fs, args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return "", fmt.Errorf("%w: give one pair, by unit number, end name or pod", errUsage)
	}
	id := rest[0]
	if err := parse(fs, rest[1:]); err != nil {
		return "", err
	}
	if fs.NArg() != 0 {
		return "", fmt.Errorf("%w: give one pair, by end name or unit number", errUsage)
	}
	return id, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
