package metrics

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkTransmitWhileScraped: a 1514-byte frame through a real Core's
// Transmit and flush, with nobody scraping (off) and with the pair's
// metrics gathered every 10 ms meanwhile (on: a hundred times a 1 s scrape
// interval). The datapath counts nothing for the metrics: what a scrape
// costs it is the reads of its atomics, the queue locks, and the scraping
// goroutine's share of the CPUs.
func BenchmarkTransmitWhileScraped(b *testing.B) {
	for _, scraped := range []bool{false, true} {
		b.Run(map[bool]string{false: "off", true: "on"}[scraped], func(b *testing.B) {
			p, _ := corePair(b)
			if scraped {
				defer scrapeEvery(b, New(&fakeSource{pairs: []Pair{webPair(p)}}), 10*time.Millisecond)()
			}
			b.ReportAllocs()
			b.SetBytes(1514)
			for i := 0; i < b.N; i++ {
				p.A.Transmit(udp(1514, false))
			}
		})
	}
}

// BenchmarkScrape: one whole scrape (Gather) of a daemon with 1, 100 and
// 1000 pairs, Go and process collectors included.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			src := &fakeSource{}
			for u := 0; u < n; u++ {
				p, _ := corePair(b)
				mp := webPair(p)
				mp.Unit = u
				src.pairs = append(src.pairs, mp)
			}
			m := New(src)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := m.reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// scrapeEvery gathers m every d until the returned stop is called.
func scrapeEvery(b *testing.B, m *Metrics, d time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := m.reg.Gather(); err != nil {
					b.Error(err)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
