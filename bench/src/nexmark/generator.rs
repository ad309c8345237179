//! The Nexmark event generator, after the rules of the reference generator
//! (nexmark/nexmark, `nexmark-flink`):
//!
//! - event `n` is a person, an auction or a bid by `n % 50`: 1 : 3 : 46;
//! - ids count up from 1000 (people, auctions) and categories from 10 (5 of them);
//! - a bid goes to a hot auction (the first of the latest batch of 100) with probability
//!   1/2, otherwise to one of the last 100 auctions plus 10 not yet created; its bidder is a
//!   hot bidder with probability 3/4, otherwise one of the last 1000 people plus 10 ahead;
//!   a seller is hot with probability 3/4;
//! - prices are log-uniform from 1.00 to 1,000,000.00 (in cents); strings are lower-case
//!   letters with the odd space; each record is padded by `extra` to an average size
//!   (person 200, auction 500, bid 100 bytes);
//! - an auction lasts on average until 100 more auctions have been created;
//! - event `n` happens at `BASE_TIME_MS + n × (1e6 / rate) µs`.
//!
//! Two choices make the stream a pure function of `n`, so that Strom and Flink (whose port
//! is `bench/flink/src/strom/bench/nexmark/NexmarkGenerator.java`) see identical events:
//! every event draws from `java.util.Random` seeded with its own number (as Beam's Nexmark
//! does), and parallel sources interleave one timeline (reader `s` of `p` makes events
//! `s, s+p, …`) instead of splitting it into `p` timelines; so the events, and every query
//! result, are the same at any parallelism. The price uses a power function built from
//! `+ × /` only, which IEEE 754 rounds identically in Rust and Java (a libm `pow` might
//! differ in the last bit and change a rounded price).

use super::model::{Auction, Bid, Event, Person};
use super::random::JavaRandom;

/// 2026-01-01T00:00:00Z: the event time of event 0.
pub const BASE_TIME_MS: i64 = 1_767_225_600_000;
/// The default event-time rate: 10 s of event time per million events.
pub const DEFAULT_EVENTS_PER_SECOND: u64 = 100_000;

const FIRST_PERSON_ID: i64 = 1000;
const FIRST_AUCTION_ID: i64 = 1000;
const FIRST_CATEGORY_ID: i64 = 10;
const NUM_CATEGORIES: i32 = 5;

const PERSON_PROPORTION: i64 = 1;
const AUCTION_PROPORTION: i64 = 3;
const TOTAL_PROPORTION: i64 = 50;

const NUM_ACTIVE_PEOPLE: i64 = 1000;
const NUM_IN_FLIGHT_AUCTIONS: i64 = 100;
const PERSON_ID_LEAD: i64 = 10;
const AUCTION_ID_LEAD: i64 = 10;
/// Chances are 1 - 1/ratio that a bid's auction, a bid's bidder, an auction's seller is hot.
const HOT_AUCTION_RATIO: i32 = 2;
const HOT_BIDDER_RATIO: i32 = 4;
const HOT_SELLER_RATIO: i32 = 4;
/// Hot ids are the first of each batch of this many.
const HOT_BATCH: i64 = 100;

const AVG_PERSON_BYTES: i32 = 200;
const AVG_AUCTION_BYTES: i32 = 500;
const AVG_BID_BYTES: i32 = 100;

const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// Where events sit in event time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timeline {
    inter_event_delay_us: f64,
}

impl Timeline {
    /// `events_per_second` events per second of event time.
    pub fn new(events_per_second: u64) -> Self {
        Timeline {
            inter_event_delay_us: 1_000_000.0 / events_per_second.max(1) as f64,
        }
    }

    /// The event time of event `n`.
    #[inline]
    pub fn timestamp(&self, n: u64) -> i64 {
        BASE_TIME_MS + (n as f64 * self.inter_event_delay_us) as i64 / 1000
    }
}

/// Event number `n` of the stream.
pub fn event(n: u64, timeline: &Timeline) -> Event {
    let id = n as i64;
    let mut random = JavaRandom::new(id);
    let timestamp = timeline.timestamp(n);
    let rem = id % TOTAL_PROPORTION;
    if rem < PERSON_PROPORTION {
        Event::Person(Box::new(person(id, &mut random, timestamp)))
    } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
        Event::Auction(Box::new(auction(n, id, &mut random, timestamp, timeline)))
    } else {
        Event::Bid(bid(id, &mut random, timestamp))
    }
}

fn person(event_id: i64, random: &mut JavaRandom, timestamp: i64) -> Person {
    let id = last_base0_person_id(event_id) + FIRST_PERSON_ID;
    let mut name = String::with_capacity(16);
    name.push_str(FIRST_NAMES[random.next_int_bounded(FIRST_NAMES.len() as i32) as usize]);
    name.push(' ');
    name.push_str(LAST_NAMES[random.next_int_bounded(LAST_NAMES.len() as i32) as usize]);
    let mut email_address = next_string(random, 7);
    email_address.push('@');
    email_address.push_str(&next_string(random, 5));
    email_address.push_str(".com");
    let mut credit_card = String::with_capacity(19);
    for i in 0..4 {
        if i > 0 {
            credit_card.push(' ');
        }
        push_4_digits(&mut credit_card, random.next_int_bounded(10_000));
    }
    let city = US_CITIES[random.next_int_bounded(US_CITIES.len() as i32) as usize];
    let state = US_STATES[random.next_int_bounded(US_STATES.len() as i32) as usize];
    let size = 8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
    let extra = next_extra(random, size as i32, AVG_PERSON_BYTES);
    Person {
        id,
        name,
        email_address,
        credit_card,
        city: city.to_owned(),
        state: state.to_owned(),
        date_time: timestamp,
        extra,
    }
}

fn auction(
    n: u64,
    event_id: i64,
    random: &mut JavaRandom,
    timestamp: i64,
    timeline: &Timeline,
) -> Auction {
    let id = last_base0_auction_id(event_id) + FIRST_AUCTION_ID;
    let seller = if random.next_int_bounded(HOT_SELLER_RATIO) > 0 {
        (last_base0_person_id(event_id) / HOT_BATCH) * HOT_BATCH
    } else {
        next_base0_person_id(event_id, random)
    } + FIRST_PERSON_ID;
    let category = FIRST_CATEGORY_ID + random.next_int_bounded(NUM_CATEGORIES) as i64;
    let initial_bid = next_price(random);
    let expires = timestamp + next_auction_length_ms(n, random, timestamp, timeline);
    let item_name = next_string(random, 20);
    let description = next_string(random, 100);
    let reserve = initial_bid + next_price(random);
    let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
    let extra = next_extra(random, size as i32, AVG_AUCTION_BYTES);
    Auction {
        id,
        item_name,
        description,
        initial_bid,
        reserve,
        date_time: timestamp,
        expires,
        seller,
        category,
        extra,
    }
}

fn bid(event_id: i64, random: &mut JavaRandom, timestamp: i64) -> Bid {
    let auction = if random.next_int_bounded(HOT_AUCTION_RATIO) > 0 {
        (last_base0_auction_id(event_id) / HOT_BATCH) * HOT_BATCH
    } else {
        next_base0_auction_id(event_id, random)
    } + FIRST_AUCTION_ID;
    // Hot bidders are the second of each batch, so they are not also the hot sellers.
    let bidder = if random.next_int_bounded(HOT_BIDDER_RATIO) > 0 {
        (last_base0_person_id(event_id) / HOT_BATCH) * HOT_BATCH + 1
    } else {
        next_base0_person_id(event_id, random)
    } + FIRST_PERSON_ID;
    let price = next_price(random);
    let extra = next_extra(random, 8 + 8 + 8 + 8, AVG_BID_BYTES);
    Bid {
        auction,
        bidder,
        price,
        date_time: timestamp,
        extra,
    }
}

/// The id (from 0) of the latest person at event `event_id` (its own, for a person).
fn last_base0_person_id(event_id: i64) -> i64 {
    let epoch = event_id / TOTAL_PROPORTION;
    let offset = (event_id % TOTAL_PROPORTION).min(PERSON_PROPORTION - 1);
    epoch * PERSON_PROPORTION + offset
}

/// The id (from 0) of the latest auction at event `event_id` (its own, for an auction).
fn last_base0_auction_id(event_id: i64) -> i64 {
    let mut epoch = event_id / TOTAL_PROPORTION;
    let mut offset = event_id % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        // A person: the last auction of the previous epoch.
        epoch -= 1;
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        // A bid: the last auction of this epoch.
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch * AUCTION_PROPORTION + offset
}

/// One of the active people, or one of the next few not yet created.
fn next_base0_person_id(event_id: i64, random: &mut JavaRandom) -> i64 {
    let people = last_base0_person_id(event_id) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + next_long(random, active + PERSON_ID_LEAD)
}

/// One of the auctions likely still open, or one of the next few not yet created.
fn next_base0_auction_id(event_id: i64, random: &mut JavaRandom) -> i64 {
    let max = last_base0_auction_id(event_id);
    let min = (max - NUM_IN_FLIGHT_AUCTIONS).max(0);
    min + next_long(random, max - min + 1 + AUCTION_ID_LEAD)
}

/// How long an auction runs: on average, until `NUM_IN_FLIGHT_AUCTIONS` more auctions exist.
fn next_auction_length_ms(
    n: u64,
    random: &mut JavaRandom,
    timestamp: i64,
    timeline: &Timeline,
) -> i64 {
    let events_for_auctions = (NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION) / AUCTION_PROPORTION;
    let horizon_ms = timeline.timestamp(n + events_for_auctions as u64) - timestamp;
    1 + next_long(random, (horizon_ms * 2).max(1))
}

/// Uniform in `0..n`.
fn next_long(random: &mut JavaRandom, n: i64) -> i64 {
    if n < i32::MAX as i64 {
        random.next_int_bounded(n as i32) as i64
    } else {
        // The reference's skewed fallback, kept for fidelity (unreachable at our sizes).
        (random.next_long() % n).abs()
    }
}

/// A price in cents, log-uniform in [100, 100,000,000].
fn next_price(random: &mut JavaRandom) -> i64 {
    round_half_up(pow10(random.next_double() * 6.0) * 100.0)
}

/// Rounds a non-negative `x` half up: `⌊x + 0.5⌋`, as a truncating cast (for non-negative
/// values the same as `floor`, which baseline x86-64 would call into libm for).
#[inline]
fn round_half_up(x: f64) -> i64 {
    (x + 0.5) as i64
}

/// `1/k!` for `k` in `0..=12`, each from the previous by one IEEE division (Java's port
/// computes them the same way, so they are the same doubles).
const INVERSE_FACTORIALS: [f64; 13] = {
    let mut c = [1.0; 13];
    let mut k = 1;
    while k < 13 {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// `10^x` for `x` in `[0, 6)`, from `+ ×` only (see the module docs): `10^⌊x⌋` exactly,
/// times `e^(frac·ln 10)` by its Taylor polynomial of degree 12 on a sixteenth of the
/// exponent, squared 4 times. The polynomial is evaluated by Estrin's scheme (pairs, then
/// pairs of pairs), whose independent products the CPU overlaps.
fn pow10(x: f64) -> f64 {
    const POWERS: [f64; 7] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0];
    const C: [f64; 13] = INVERSE_FACTORIALS;
    let whole = x as usize;
    let z = (x - whole as f64) * std::f64::consts::LN_10 / 16.0;
    let z2 = z * z;
    let z4 = z2 * z2;
    let z8 = z4 * z4;
    let p01 = C[0] + C[1] * z;
    let p23 = C[2] + C[3] * z;
    let p45 = C[4] + C[5] * z;
    let p67 = C[6] + C[7] * z;
    let p89 = C[8] + C[9] * z;
    let p1011 = C[10] + C[11] * z;
    let p0_3 = p01 + p23 * z2;
    let p4_7 = p45 + p67 * z2;
    let p8_11 = p89 + p1011 * z2;
    let p8_12 = p8_11 + C[12] * z4;
    let mut t = (p0_3 + p4_7 * z4) + p8_12 * z8;
    for _ in 0..4 {
        t *= t;
    }
    POWERS[whole] * t
}

/// 3 to `max_length - 1` random lower-case letters and spaces, trimmed.
fn next_string(random: &mut JavaRandom, max_length: i32) -> String {
    let len = 3 + random.next_int_bounded(max_length - 3);
    let mut bytes = vec![0u8; len as usize];
    for b in bytes.iter_mut() {
        *b = if random.next_int_bounded(13) == 0 {
            b' '
        } else {
            b'a' + random.next_int_bounded(26) as u8
        };
    }
    // Java's `trim()`.
    let start = bytes.iter().position(|&b| b != b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    bytes.truncate(end);
    bytes.drain(..start);
    ascii(bytes)
}

/// Exactly `length` characters, six from each random int: its base-26 digits, lowest
/// first. Java's `%` and `/` truncate toward zero, so a negative int gives characters
/// below 'a' ('H'..'`'); kept as is. (Truncating divisions compose, so digit `i` is
/// `(rnd / 26^i) % 26`: the six are computed from independent divisions by constants
/// rather than by a chain of divisions.)
fn next_exact_string(random: &mut JavaRandom, length: i32) -> String {
    #[inline(always)]
    fn letter(q: i32) -> u8 {
        (b'a' as i32 + q % 26) as u8
    }
    let mut bytes = vec![0u8; length.max(0) as usize];
    let mut chunks = bytes.chunks_exact_mut(6);
    for chunk in &mut chunks {
        let q0 = random.next_int();
        let q = [
            q0,
            q0 / 26,
            q0 / 676,
            q0 / 17_576,
            q0 / 456_976,
            q0 / 11_881_376,
            q0 / 308_915_776,
        ];
        // `q[i] % 26` is `q[i] - 26 × q[i + 1]`, and `q[i + 1]` is at hand.
        for i in 0..6 {
            chunk[i] = (b'a' as i32 + q[i] - 26 * q[i + 1]) as u8;
        }
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut rnd = random.next_int();
        for b in rest {
            *b = letter(rnd);
            rnd /= 26;
        }
    }
    ascii(bytes)
}

/// The generator's strings are ASCII by construction.
fn ascii(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// Padding that brings a record of `current_size` bytes to `average_size` on average.
fn next_extra(random: &mut JavaRandom, current_size: i32, average_size: i32) -> String {
    if current_size > average_size {
        return String::new();
    }
    let wanted = average_size - current_size;
    let delta = round_half_up(wanted as f64 * 0.2) as i32;
    let min = wanted - delta;
    let size = min
        + if delta == 0 {
            0
        } else {
            random.next_int_bounded(2 * delta)
        };
    next_exact_string(random, size)
}

fn push_4_digits(s: &mut String, v: i32) {
    for d in [v / 1000, v / 100 % 10, v / 10 % 10, v % 10] {
        s.push((b'0' + d as u8) as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_is_one_person_three_auctions_46_bids_per_50() {
        let t = Timeline::new(DEFAULT_EVENTS_PER_SECOND);
        let (mut p, mut a, mut b) = (0, 0, 0);
        for n in 0..5_000 {
            match event(n, &t) {
                Event::Person(_) => p += 1,
                Event::Auction(_) => a += 1,
                Event::Bid(_) => b += 1,
            }
        }
        assert_eq!((p, a, b), (100, 300, 4_600));
    }

    #[test]
    fn ids_count_up_from_1000_and_bids_refer_to_near_ids() {
        let t = Timeline::new(DEFAULT_EVENTS_PER_SECOND);
        let Event::Person(p) = event(50 * 7, &t) else {
            panic!("event 350 is a person")
        };
        assert_eq!(p.id, 1007);
        let Event::Auction(a) = event(50 * 7 + 3, &t) else {
            panic!("event 353 is an auction")
        };
        assert_eq!(a.id, 1000 + 7 * 3 + 2);
        assert!((10..15).contains(&a.category));
        assert!(a.expires > a.date_time);
        for n in 10_000..12_000 {
            if let Event::Bid(b) = event(n, &t) {
                let last_auction = 1000 + (n as i64 / 50) * 3 + 2;
                assert!(b.auction <= last_auction + AUCTION_ID_LEAD, "{b:?}");
                assert!(
                    b.auction >= last_auction - NUM_IN_FLIGHT_AUCTIONS - HOT_BATCH,
                    "{b:?}"
                );
                assert!((100..=100_000_000).contains(&b.price), "{b:?}");
                assert!((54..82).contains(&b.extra.len()), "{b:?}");
            }
        }
    }

    #[test]
    fn event_time_follows_the_rate() {
        let t = Timeline::new(100_000);
        assert_eq!(t.timestamp(0), BASE_TIME_MS);
        assert_eq!(t.timestamp(99_999), BASE_TIME_MS + 999);
        assert_eq!(t.timestamp(100_000), BASE_TIME_MS + 1_000);
    }

    #[test]
    fn pow10_is_accurate() {
        for i in 0..600 {
            let x = i as f64 / 100.0;
            let exact = 10f64.powf(x);
            assert!(((pow10(x) - exact) / exact).abs() < 1e-14, "10^{x}");
        }
    }
}
