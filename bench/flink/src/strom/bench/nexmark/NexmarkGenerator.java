package strom.bench.nexmark;

import java.util.Random;

/**
 * The Java twin of Strom's Nexmark generator ({@code bench/src/nexmark/generator.rs}, whose
 * module docs give the rules and the two choices that make event {@code n} a pure function
 * of {@code n}). Both sides must stay identical: the checksum of the first events, printed
 * by {@code NexmarkBench checksum} and {@code strom-bench nexmark-checksum}, proves it.
 */
public final class NexmarkGenerator {
    /** 2026-01-01T00:00:00Z: the event time of event 0. */
    public static final long BASE_TIME_MS = 1_767_225_600_000L;
    public static final long DEFAULT_EVENTS_PER_SECOND = 100_000;

    static final long FIRST_PERSON_ID = 1000;
    static final long FIRST_AUCTION_ID = 1000;
    static final long FIRST_CATEGORY_ID = 10;
    static final int NUM_CATEGORIES = 5;

    static final long PERSON_PROPORTION = 1;
    static final long AUCTION_PROPORTION = 3;
    static final long TOTAL_PROPORTION = 50;

    static final long NUM_ACTIVE_PEOPLE = 1000;
    static final long NUM_IN_FLIGHT_AUCTIONS = 100;
    static final long PERSON_ID_LEAD = 10;
    static final long AUCTION_ID_LEAD = 10;
    static final int HOT_AUCTION_RATIO = 2;
    static final int HOT_BIDDER_RATIO = 4;
    static final int HOT_SELLER_RATIO = 4;
    static final long HOT_BATCH = 100;

    static final int AVG_PERSON_BYTES = 200;
    static final int AVG_AUCTION_BYTES = 500;
    static final int AVG_BID_BYTES = 100;

    static final String[] US_STATES = {"AZ", "CA", "ID", "OR", "WA", "WY"};
    static final String[] US_CITIES = {"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend",
        "Redmond", "Seattle", "Kent", "Cheyenne"};
    static final String[] FIRST_NAMES = {"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie",
        "Sarah", "Deiter", "Walter"};
    static final String[] LAST_NAMES = {"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith",
        "Jones", "Noris"};

    /** The natural logarithm of 10, the same double as Rust's {@code f64::consts::LN_10}. */
    static final double LN_10 = 2.302585092994046;
    static final double[] POWERS = {1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0};

    private final double interEventDelayUs;
    private final Lcg random = new Lcg();

    public NexmarkGenerator(long eventsPerSecond) {
        this.interEventDelayUs = 1_000_000.0 / Math.max(eventsPerSecond, 1);
    }

    /** The event time of event {@code n}. */
    public long timestamp(long n) {
        return BASE_TIME_MS + (long) (n * interEventDelayUs) / 1000;
    }

    /** Event number {@code n}. */
    public Event event(long n) {
        random.setSeed(n);
        long timestamp = timestamp(n);
        long rem = n % TOTAL_PROPORTION;
        Event e = new Event();
        if (rem < PERSON_PROPORTION) {
            e.person = person(n, timestamp);
        } else if (rem < PERSON_PROPORTION + AUCTION_PROPORTION) {
            e.auction = auction(n, timestamp);
        } else {
            e.bid = bid(n, timestamp);
        }
        return e;
    }

    private Event.Person person(long eventId, long timestamp) {
        Event.Person p = new Event.Person();
        p.id = lastBase0PersonId(eventId) + FIRST_PERSON_ID;
        p.name = FIRST_NAMES[random.nextInt(FIRST_NAMES.length)] + " "
                + LAST_NAMES[random.nextInt(LAST_NAMES.length)];
        p.emailAddress = nextString(7) + "@" + nextString(5) + ".com";
        StringBuilder cc = new StringBuilder(19);
        for (int i = 0; i < 4; i++) {
            if (i > 0) {
                cc.append(' ');
            }
            int v = random.nextInt(10_000);
            cc.append((char) ('0' + v / 1000)).append((char) ('0' + v / 100 % 10))
                    .append((char) ('0' + v / 10 % 10)).append((char) ('0' + v % 10));
        }
        p.creditCard = cc.toString();
        p.city = US_CITIES[random.nextInt(US_CITIES.length)];
        p.state = US_STATES[random.nextInt(US_STATES.length)];
        int size = 8 + p.name.length() + p.emailAddress.length() + p.creditCard.length() + p.city.length()
                + p.state.length();
        p.extra = nextExtra(size, AVG_PERSON_BYTES);
        p.dateTime = timestamp;
        return p;
    }

    private Event.Auction auction(long eventId, long timestamp) {
        Event.Auction a = new Event.Auction();
        a.id = lastBase0AuctionId(eventId) + FIRST_AUCTION_ID;
        a.seller = (random.nextInt(HOT_SELLER_RATIO) > 0
                ? (lastBase0PersonId(eventId) / HOT_BATCH) * HOT_BATCH
                : nextBase0PersonId(eventId)) + FIRST_PERSON_ID;
        a.category = FIRST_CATEGORY_ID + random.nextInt(NUM_CATEGORIES);
        a.initialBid = nextPrice();
        long eventsForAuctions = (NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION;
        long horizonMs = timestamp(eventId + eventsForAuctions) - timestamp;
        a.expires = timestamp + 1 + nextLong(Math.max(horizonMs * 2, 1));
        a.itemName = nextString(20);
        a.description = nextString(100);
        a.reserve = a.initialBid + nextPrice();
        int size = 8 + a.itemName.length() + a.description.length() + 8 + 8 + 8 + 8 + 8;
        a.extra = nextExtra(size, AVG_AUCTION_BYTES);
        a.dateTime = timestamp;
        return a;
    }

    private Event.Bid bid(long eventId, long timestamp) {
        Event.Bid b = new Event.Bid();
        b.auction = (random.nextInt(HOT_AUCTION_RATIO) > 0
                ? (lastBase0AuctionId(eventId) / HOT_BATCH) * HOT_BATCH
                : nextBase0AuctionId(eventId)) + FIRST_AUCTION_ID;
        b.bidder = (random.nextInt(HOT_BIDDER_RATIO) > 0
                ? (lastBase0PersonId(eventId) / HOT_BATCH) * HOT_BATCH + 1
                : nextBase0PersonId(eventId)) + FIRST_PERSON_ID;
        b.price = nextPrice();
        b.extra = nextExtra(8 + 8 + 8 + 8, AVG_BID_BYTES);
        b.dateTime = timestamp;
        return b;
    }

    static long lastBase0PersonId(long eventId) {
        long epoch = eventId / TOTAL_PROPORTION;
        long offset = Math.min(eventId % TOTAL_PROPORTION, PERSON_PROPORTION - 1);
        return epoch * PERSON_PROPORTION + offset;
    }

    static long lastBase0AuctionId(long eventId) {
        long epoch = eventId / TOTAL_PROPORTION;
        long offset = eventId % TOTAL_PROPORTION;
        if (offset < PERSON_PROPORTION) {
            epoch--;
            offset = AUCTION_PROPORTION - 1;
        } else if (offset >= PERSON_PROPORTION + AUCTION_PROPORTION) {
            offset = AUCTION_PROPORTION - 1;
        } else {
            offset -= PERSON_PROPORTION;
        }
        return epoch * AUCTION_PROPORTION + offset;
    }

    private long nextBase0PersonId(long eventId) {
        long people = lastBase0PersonId(eventId) + 1;
        long active = Math.min(people, NUM_ACTIVE_PEOPLE);
        return people - active + nextLong(active + PERSON_ID_LEAD);
    }

    private long nextBase0AuctionId(long eventId) {
        long max = lastBase0AuctionId(eventId);
        long min = Math.max(max - NUM_IN_FLIGHT_AUCTIONS, 0);
        return min + nextLong(max - min + 1 + AUCTION_ID_LEAD);
    }

    private long nextLong(long n) {
        if (n < Integer.MAX_VALUE) {
            return random.nextInt((int) n);
        }
        return Math.abs(random.nextLong() % n);
    }

    private long nextPrice() {
        return roundHalfUp(pow10(random.nextDouble() * 6.0) * 100.0);
    }

    /** Rounds a non-negative {@code x} half up, as generator.rs does. */
    static long roundHalfUp(double x) {
        return (long) (x + 0.5);
    }

    /** 1/k! for k in 0..=12, each from the previous by one division, as generator.rs does. */
    static final double[] INVERSE_FACTORIALS = new double[13];

    static {
        INVERSE_FACTORIALS[0] = 1.0;
        for (int k = 1; k < 13; k++) {
            INVERSE_FACTORIALS[k] = INVERSE_FACTORIALS[k - 1] / k;
        }
    }

    /** See generator.rs: the same operations in the same order, so the same bits. */
    static double pow10(double x) {
        double[] c = INVERSE_FACTORIALS;
        int whole = (int) x;
        double z = (x - whole) * LN_10 / 16.0;
        double z2 = z * z;
        double z4 = z2 * z2;
        double z8 = z4 * z4;
        double p01 = c[0] + c[1] * z;
        double p23 = c[2] + c[3] * z;
        double p45 = c[4] + c[5] * z;
        double p67 = c[6] + c[7] * z;
        double p89 = c[8] + c[9] * z;
        double p1011 = c[10] + c[11] * z;
        double p0to3 = p01 + p23 * z2;
        double p4to7 = p45 + p67 * z2;
        double p8to11 = p89 + p1011 * z2;
        double p8to12 = p8to11 + c[12] * z4;
        double t = (p0to3 + p4to7 * z4) + p8to12 * z8;
        for (int i = 0; i < 4; i++) {
            t *= t;
        }
        return POWERS[whole] * t;
    }

    private String nextString(int maxLength) {
        int len = 3 + random.nextInt(maxLength - 3);
        StringBuilder sb = new StringBuilder(len);
        while (len-- > 0) {
            if (random.nextInt(13) == 0) {
                sb.append(' ');
            } else {
                sb.append((char) ('a' + random.nextInt(26)));
            }
        }
        return sb.toString().trim();
    }

    private static final int[] POWERS_OF_26 = {1, 26, 676, 17_576, 456_976, 11_881_376};

    /** See generator.rs: digit i of a random int is (rnd / 26^i) % 26, truncating. */
    private String nextExactString(int length) {
        char[] chars = new char[Math.max(length, 0)];
        for (int i = 0; i < chars.length; i += 6) {
            int rnd = random.nextInt();
            for (int d = 0; d < 6 && i + d < chars.length; d++) {
                chars[i + d] = (char) ('a' + rnd / POWERS_OF_26[d] % 26);
            }
        }
        return new String(chars);
    }

    private String nextExtra(int currentSize, int averageSize) {
        if (currentSize > averageSize) {
            return "";
        }
        int wanted = averageSize - currentSize;
        int delta = (int) roundHalfUp(wanted * 0.2);
        int min = wanted - delta;
        int size = min + (delta == 0 ? 0 : random.nextInt(2 * delta));
        return nextExactString(size);
    }

    /**
     * {@link java.util.Random}'s generator without its atomic seed: the JDK's own nextInt,
     * nextLong and nextDouble run on top of this {@code next}, so the numbers are the JDK's
     * (checked against {@code new Random(seed)} by {@code NexmarkBench checksum}).
     */
    static final class Lcg extends Random {
        private long seed;

        Lcg() {
            super(0);
        }

        @Override
        public void setSeed(long s) {
            seed = (s ^ 0x5DEECE66DL) & ((1L << 48) - 1);
        }

        @Override
        protected int next(int bits) {
            seed = (seed * 0x5DEECE66DL + 0xBL) & ((1L << 48) - 1);
            return (int) (seed >>> (48 - bits));
        }
    }
}
