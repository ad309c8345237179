package strom.bench;

/**
 * The benchmark record, generated exactly as Strom's {@code bench/src/event.rs} does: event
 * {@code i} is derived from {@code splitmix64(i)}, and event time advances 1 ms every 1,000
 * events.
 */
public class BenchEvent {
    public long key;
    public long value;
    public long timestamp;

    public BenchEvent() {}

    public BenchEvent(long key, long value, long timestamp) {
        this.key = key;
        this.value = value;
        this.timestamp = timestamp;
    }

    public static final long EVENTS_PER_MS = 1_000;

    /** splitmix64; Java's wrapping long arithmetic and {@code >>>} match Rust's u64. */
    public static long splitmix64(long x) {
        x += 0x9e3779b97f4a7c15L;
        x = (x ^ (x >>> 30)) * 0xbf58476d1ce4e5b9L;
        x = (x ^ (x >>> 27)) * 0x94d049bb133111ebL;
        return x ^ (x >>> 31);
    }

    /** Event {@code i} with keys in {@code 0..keys}. */
    public static BenchEvent event(long i, long keys) {
        long r = splitmix64(i);
        return new BenchEvent(
                Long.remainderUnsigned(r, keys),
                (r >>> 40) % 1_000,
                i / EVENTS_PER_MS);
    }

    /** The map of the stateless pipeline. */
    public static BenchEvent scramble(BenchEvent e) {
        return new BenchEvent(e.key, (e.value * 31) ^ e.key, e.timestamp);
    }

    /** The filter of the stateless pipeline (keeps about half). */
    public static boolean keep(BenchEvent e) {
        return (e.value & 1) == 0;
    }
}
