// Package epair is the epair queue core: a port of the behaviour of FreeBSD's
// if_epair(4) (sys/net/if_epair.c) to Go, with no system calls.
//
// A Pair is two Ends joined by a virtual crossover cable. A frame transmitted
// on one End is checked (MTU rule, link rule), put on one of the other End's
// bounded receive queues (chosen by a flow hash, so a flow is never
// reordered), counted, and later delivered to the other End's Sink by one
// flush of that queue.
//
// Each queue runs the if_epair wake-up state machine IDLE -> WAKING ->
// RUNNING: the first frame into an IDLE queue schedules exactly one flush; a
// flush takes everything queued at that moment; if more arrived meanwhile the
// queue is scheduled again instead of being drained in a loop, so one busy
// queue cannot starve the others ("avoid starving ourselves").
//
// Two dispatch policies share that state machine. Deferred hands a scheduled
// queue to a fixed worker per queue id, shared by all pairs (the per-CPU
// taskqueues of if_epair). Direct lets the goroutine that woke an IDLE queue
// run the first flush itself, which saves a goroutine handoff per frame; any
// re-schedule still goes to the shared worker.
//
// The rest of the package holds the other if_epair rules: unit numbers and
// interface names (unit.go), MAC addresses (mac.go) and frame parsing for the
// flow hash and the MTU rule (frame.go).
package epair
