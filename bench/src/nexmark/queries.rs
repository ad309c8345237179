//! Nexmark queries q0–q5, q7 and q8 as Strom jobs, with the semantics of their Flink SQL
//! text (`bench/flink/src/strom/bench/nexmark/Queries.java` holds the SQL):
//!
//! | query | what it does |
//! |---|---|
//! | q0 | pass-through: every bid |
//! | q1 | currency conversion: bid prices × 0.908 |
//! | q2 | selection: bids on auctions whose id is a multiple of 123 |
//! | q3 | local item suggestion: sellers in OR, ID, CA of auctions in category 10 (join) |
//! | q4 | average winning price per category (join, two updating aggregations) |
//! | q5 | hot items: per sliding window (10 s every 2 s), the auctions with most bids |
//! | q7 | highest bid: per 10 s tumbling window, the bids at the window's highest price |
//! | q8 | new users: people who created auctions in the 10 s window they joined in |
//!
//! Events carry their `date_time` as event time, with watermarks 4 s behind (Nexmark's
//! DDL). Each query ends in a [`QuerySink`]: the benchmark discards rows, the agreement
//! test collects them as canonical text ([`Row`]).

use super::model::{Auction, Bid, Event, Person};
use super::source::NexmarkSource;
use serde::{Deserialize, Serialize};
use std::fmt::Write;
use std::time::Duration;
use strom::prelude::*;

/// Out-of-orderness bound of the watermarks (Nexmark's `dateTime - INTERVAL '4' SECOND`).
const WATERMARK_DELAY: Duration = Duration::from_secs(4);
/// Tumbling windows of q7 and q8.
const TUMBLE_MS: i64 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Q0,
    Q1,
    Q2,
    Q3,
    Q4,
    Q5,
    Q7,
    Q8,
}

impl Query {
    pub const ALL: [Query; 8] = [
        Query::Q0,
        Query::Q1,
        Query::Q2,
        Query::Q3,
        Query::Q4,
        Query::Q5,
        Query::Q7,
        Query::Q8,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Query::Q0 => "q0",
            Query::Q1 => "q1",
            Query::Q2 => "q2",
            Query::Q3 => "q3",
            Query::Q4 => "q4",
            Query::Q5 => "q5",
            Query::Q7 => "q7",
            Query::Q8 => "q8",
        }
    }

    pub fn parse(s: &str) -> Option<Query> {
        Query::ALL.into_iter().find(|q| q.name() == s)
    }
}

/// A result row, as the canonical text both systems print: fields joined by `|`, times in
/// epoch milliseconds, decimals with their scale.
pub trait Row: Data {
    fn write_row(&self, out: &mut String);
    /// For an updating result (q4): rows with the same key replace each other, and the
    /// last one is the result.
    fn upsert_key(&self) -> Option<i64> {
        None
    }
}

/// Where a query's rows go.
pub trait QuerySink {
    fn attach<R: Row>(&self, rows: &DataStream<R>);
}

/// Builds query `q` over the events of `source` into `sink`.
pub fn build(env: &StreamEnv, q: Query, source: NexmarkSource, sink: &impl QuerySink) {
    let events = env.from_source(
        source,
        WatermarkStrategy::for_bounded_out_of_orderness(WATERMARK_DELAY)
            .with_timestamp_assigner(|e: &Event| e.date_time()),
        "Nexmark",
    );
    match q {
        Query::Q0 => sink.attach(&bids(&events)),
        Query::Q1 => sink.attach(&q1(&bids(&events))),
        Query::Q2 => sink.attach(&q2(&bids(&events))),
        Query::Q3 => {
            let (auctions, people) = auctions_and_people(&events);
            sink.attach(&q3(&people, &auctions))
        }
        Query::Q4 => {
            let (bids, auctions) = bids_and_auctions(&events);
            sink.attach(&q4(&auctions, &bids))
        }
        Query::Q5 => sink.attach(&q5(&bids(&events))),
        Query::Q7 => sink.attach(&q7(&bids(&events))),
        Query::Q8 => {
            let (auctions, people) = auctions_and_people(&events);
            sink.attach(&q8(&people, &auctions))
        }
    }
}

fn bids(events: &DataStream<Event>) -> DataStream<Bid> {
    events.flat_map(Event::into_bid).name("bids")
}

/// Auctions, and people as a side output: one pass that moves every event to where it
/// goes (two `flat_map`s on `events` would each get a copy of every event).
fn auctions_and_people(events: &DataStream<Event>) -> (DataStream<Auction>, DataStream<Person>) {
    let people = OutputTag::<Person>::new("people");
    let tag = people.clone();
    let auctions = events
        .process(SplitFn(
            move |e: Event, ctx: &mut Context<'_>, out: &mut Collector<'_, Auction>| match e {
                Event::Auction(a) => out.collect(*a),
                Event::Person(p) => ctx.output(&tag, *p),
                Event::Bid(_) => {}
            },
        ))
        .name("auctions and people");
    let people = auctions.side_output(&people);
    (auctions, people)
}

/// Bids, and auctions as a side output (see [`auctions_and_people`]).
fn bids_and_auctions(events: &DataStream<Event>) -> (DataStream<Bid>, DataStream<Auction>) {
    let auctions = OutputTag::<Auction>::new("auctions");
    let tag = auctions.clone();
    let bids = events
        .process(SplitFn(
            move |e: Event, ctx: &mut Context<'_>, out: &mut Collector<'_, Bid>| match e {
                Event::Bid(b) => out.collect(b),
                Event::Auction(a) => ctx.output(&tag, *a),
                Event::Person(_) => {}
            },
        ))
        .name("bids and auctions");
    let auctions = bids.side_output(&auctions);
    (bids, auctions)
}

/// A process function from a closure.
#[derive(Clone)]
struct SplitFn<F>(F);

impl<O, F> ProcessFunction<Event, O> for SplitFn<F>
where
    F: FnMut(Event, &mut Context<'_>, &mut Collector<'_, O>) + Clone + Send + Sync + 'static,
{
    fn process_element(&mut self, e: Event, ctx: &mut Context<'_>, out: &mut Collector<'_, O>) {
        (self.0)(e, ctx, out)
    }
}

impl Row for Bid {
    fn write_row(&self, out: &mut String) {
        let _ = write!(
            out,
            "{}|{}|{}|{}|{}",
            self.auction, self.bidder, self.price, self.date_time, self.extra
        );
    }
}

// ---- q1 -------------------------------------------------------------------------------

/// A bid with its price in another currency, in thousandths (SQL's `0.908 * price`,
/// a DECIMAL with scale 3).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q1Row {
    pub auction: i64,
    pub bidder: i64,
    pub price_milli: i64,
    pub date_time: i64,
    pub extra: String,
}

impl Row for Q1Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(
            out,
            "{}|{}|{}.{:03}|{}|{}",
            self.auction,
            self.bidder,
            self.price_milli / 1000,
            self.price_milli % 1000,
            self.date_time,
            self.extra
        );
    }
}

fn q1(bids: &DataStream<Bid>) -> DataStream<Q1Row> {
    bids.map(|b: Bid| Q1Row {
        auction: b.auction,
        bidder: b.bidder,
        price_milli: b.price * 908,
        date_time: b.date_time,
        extra: b.extra,
    })
    .name("q1")
}

// ---- q2 -------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q2Row {
    pub auction: i64,
    pub price: i64,
}

impl Row for Q2Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(out, "{}|{}", self.auction, self.price);
    }
}

/// Bids on every 123rd auction.
fn q2(bids: &DataStream<Bid>) -> DataStream<Q2Row> {
    bids.flat_map(|b: Bid| {
        (b.auction % 123 == 0).then_some(Q2Row {
            auction: b.auction,
            price: b.price,
        })
    })
    .name("q2")
}

// ---- q3 -------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q3Row {
    pub name: String,
    pub city: String,
    pub state: String,
    pub auction: i64,
}

impl Row for Q3Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(
            out,
            "{}|{}|{}|{}",
            self.name, self.city, self.state, self.auction
        );
    }
}

/// The seller's name, city and state.
type Seller = (String, String, String);

const Q3_SELLER: ValueStateDescriptor<Seller> = ValueStateDescriptor::new("seller");
const Q3_WAITING: ValueStateDescriptor<Vec<i64>> = ValueStateDescriptor::new("waiting-auctions");

/// The regular (unwindowed) join of q3, keyed by person id, of people and `(auction id,
/// seller)`: a person arrives once; an auction that comes before its seller waits for them.
#[derive(Clone)]
struct SellerJoin;

impl KeyedCoProcessFunction<i64, Person, (i64, i64), Q3Row> for SellerJoin {
    fn process_element1(
        &mut self,
        p: Person,
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q3Row>,
    ) {
        let waiting = ctx.value_state(&Q3_WAITING);
        for auction in waiting.value().unwrap_or_default() {
            out.collect(Q3Row {
                name: p.name.clone(),
                city: p.city.clone(),
                state: p.state.clone(),
                auction,
            });
        }
        waiting.clear();
        ctx.value_state(&Q3_SELLER)
            .update((p.name, p.city, p.state));
    }

    fn process_element2(
        &mut self,
        (auction, _seller): (i64, i64),
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q3Row>,
    ) {
        match ctx.value_state(&Q3_SELLER).value() {
            Some((name, city, state)) => out.collect(Q3Row {
                name,
                city,
                state,
                auction,
            }),
            None => ctx.value_state(&Q3_WAITING).update_with(|w| match w {
                Some(w) => {
                    w.push(auction);
                    None
                }
                None => Some(vec![auction]),
            }),
        }
    }
}

fn q3(people: &DataStream<Person>, auctions: &DataStream<Auction>) -> DataStream<Q3Row> {
    let sellers = people
        .filter(|p: &Person| matches!(p.state.as_str(), "OR" | "ID" | "CA"))
        .name("people in OR, ID, CA");
    // Only the columns the query reads cross the exchange.
    let category_10 = auctions
        .flat_map(|a: Auction| (a.category == 10).then_some((a.id, a.seller)))
        .name("auctions in category 10");
    sellers
        .connect(&category_10)
        .key_by(|p: &Person| p.id, |a: &(i64, i64)| a.1)
        .process(SellerJoin)
        .name("q3")
        .uid("q3-join")
}

// ---- q4 -------------------------------------------------------------------------------

/// The average winning price of a category; the latest row per category is the result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q4Row {
    pub category: i64,
    pub average: i64,
}

impl Row for Q4Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(out, "{}|{}", self.category, self.average);
    }
    fn upsert_key(&self) -> Option<i64> {
        Some(self.category)
    }
}

/// For `ValueState::update_with`: applies `f` to the current value, or to a default one
/// that then becomes the value.
fn modify_or_default<V: Default>(current: Option<&mut V>, f: impl FnOnce(&mut V)) -> Option<V> {
    match current {
        Some(v) => {
            f(v);
            None
        }
        None => {
            let mut v = V::default();
            f(&mut v);
            Some(v)
        }
    }
}

/// What the join of q4 keeps per auction.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AuctionBids {
    /// `(category, opens, expires)` once the auction is known.
    auction: Option<(i64, i64, i64)>,
    /// The highest bid within the auction's time, once there is one.
    max_price: Option<i64>,
    /// `(price, time)` of bids that came before their auction.
    waiting: Vec<(i64, i64)>,
}

const Q4_AUCTION: ValueStateDescriptor<AuctionBids> = ValueStateDescriptor::new("auction-bids");

/// The join and inner `MAX(price) GROUP BY A.id, A.category` of q4, keyed by auction id:
/// emits `(category, auction, max)` whenever an auction's winning price rises.
#[derive(Clone)]
struct WinningBids;

impl WinningBids {
    fn raise(state: &mut AuctionBids, price: i64, time: i64) -> bool {
        let Some((_, opens, expires)) = state.auction else {
            return false;
        };
        if time < opens || time > expires || state.max_price.is_some_and(|m| m >= price) {
            return false;
        }
        state.max_price = Some(price);
        true
    }
}

/// What q4 reads of an auction: id, category, opening and expiry time.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct AuctionTimes {
    id: i64,
    category: i64,
    opens: i64,
    expires: i64,
}

/// What q4 reads of a bid: auction, price, time.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct BidPrice {
    auction: i64,
    price: i64,
    time: i64,
}

impl KeyedCoProcessFunction<i64, AuctionTimes, BidPrice, (i64, i64, i64)> for WinningBids {
    fn process_element1(
        &mut self,
        a: AuctionTimes,
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, (i64, i64, i64)>,
    ) {
        ctx.value_state(&Q4_AUCTION).update_with(|s| {
            modify_or_default(s, |state: &mut AuctionBids| {
                state.auction = Some((a.category, a.opens, a.expires));
                let mut raised = false;
                for (price, time) in std::mem::take(&mut state.waiting) {
                    raised |= Self::raise(state, price, time);
                }
                if raised && let Some(max) = state.max_price {
                    out.collect((a.category, a.id, max));
                }
            })
        });
    }

    fn process_element2(
        &mut self,
        b: BidPrice,
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, (i64, i64, i64)>,
    ) {
        ctx.value_state(&Q4_AUCTION).update_with(|s| {
            modify_or_default(s, |state: &mut AuctionBids| match state.auction {
                None => state.waiting.push((b.price, b.time)),
                Some((category, _, _)) => {
                    if Self::raise(state, b.price, b.time) {
                        out.collect((category, b.auction, b.price));
                    }
                }
            })
        });
    }
}

/// Per category: each auction's winning price, and their sum.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct CategoryPrices {
    winning: std::collections::HashMap<i64, i64>,
    sum: i64,
}

const Q4_CATEGORY: ValueStateDescriptor<CategoryPrices> =
    ValueStateDescriptor::new("category-prices");

/// The outer `AVG(final) GROUP BY category` of q4: the average winning price, as SQL's
/// `AVG` of a BIGINT computes it (integer division).
#[derive(Clone)]
struct AveragePrice;

impl KeyedProcessFunction<i64, (i64, i64, i64), Q4Row> for AveragePrice {
    fn process_element(
        &mut self,
        (category, auction, max): (i64, i64, i64),
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q4Row>,
    ) {
        let mut average = 0;
        ctx.value_state(&Q4_CATEGORY).update_with(|s| {
            modify_or_default(s, |state: &mut CategoryPrices| {
                let previous = state.winning.insert(auction, max).unwrap_or(0);
                state.sum += max - previous;
                average = state.sum / state.winning.len() as i64;
            })
        });
        out.collect(Q4Row { category, average });
    }
}

fn q4(auctions: &DataStream<Auction>, bids: &DataStream<Bid>) -> DataStream<Q4Row> {
    // Only the columns the query reads cross the exchange.
    let auctions = auctions
        .map(|a: Auction| AuctionTimes {
            id: a.id,
            category: a.category,
            opens: a.date_time,
            expires: a.expires,
        })
        .name("auction times");
    let bids = bids
        .map(|b: Bid| BidPrice {
            auction: b.auction,
            price: b.price,
            time: b.date_time,
        })
        .name("bid prices");
    auctions
        .connect(&bids)
        .key_by(|a: &AuctionTimes| a.id, |b: &BidPrice| b.auction)
        .process(WinningBids)
        .name("q4 winning bids")
        .uid("q4-winning-bids")
        .key_by(|w: &(i64, i64, i64)| w.0)
        .process(AveragePrice)
        .name("q4 average price")
        .uid("q4-average-price")
}

// ---- q5 -------------------------------------------------------------------------------

/// One of a window's hottest auctions and its number of bids.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q5Row {
    pub auction: i64,
    pub num: u64,
}

impl Row for Q5Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(out, "{}|{}", self.auction, self.num);
    }
}

/// Tags each window's count with the window's end: `(end, auction, count)`.
#[derive(Clone)]
struct CountPerWindow;

impl ProcessWindowFunction<i64, u64, (i64, i64, u64), TimeWindow> for CountPerWindow {
    fn process(
        &mut self,
        auction: &i64,
        ctx: &mut WindowContext<'_, i64, TimeWindow>,
        counts: &[u64],
        out: &mut Collector<'_, (i64, i64, u64)>,
    ) {
        for &count in counts {
            out.collect((ctx.window().end, *auction, count));
        }
    }
}

/// Per window (keyed by its end): the auctions counted so far, and the highest count.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct WindowCounts {
    max: u64,
    top: Vec<i64>,
}

const Q5_COUNTS: ValueStateDescriptor<WindowCounts> = ValueStateDescriptor::new("window-counts");

/// Keeps the auctions with the highest count of each window and emits them once every
/// count of the window is in: the counts are stamped with the window's last millisecond,
/// so they have all arrived when the watermark reaches it.
#[derive(Clone)]
struct HottestAuctions;

impl KeyedProcessFunction<i64, (i64, i64, u64), Q5Row> for HottestAuctions {
    fn process_element(
        &mut self,
        (end, auction, count): (i64, i64, u64),
        ctx: &mut KeyedContext<'_, i64>,
        _: &mut Collector<'_, Q5Row>,
    ) {
        let mut first = false;
        ctx.value_state(&Q5_COUNTS).update_with(|s| {
            first = s.is_none();
            modify_or_default(s, |w: &mut WindowCounts| {
                if count > w.max {
                    w.max = count;
                    w.top.clear();
                }
                if count == w.max {
                    w.top.push(auction);
                }
            })
        });
        if first {
            ctx.timer_service().register_event_time_timer(end - 1);
        }
    }

    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q5Row>,
    ) {
        let counts = ctx.value_state(&Q5_COUNTS);
        if let Some(w) = counts.value() {
            for auction in w.top {
                out.collect(Q5Row {
                    auction,
                    num: w.max,
                });
            }
        }
        counts.clear();
    }
}

fn q5(bids: &DataStream<Bid>) -> DataStream<Q5Row> {
    // Only the auction id enters the windows (the record keeps its timestamp).
    bids.map(|b: Bid| b.auction)
        .name("bid auctions")
        .key_by(|auction: &i64| *auction)
        .window(SlidingEventTimeWindows::of(
            Duration::from_secs(10),
            Duration::from_secs(2),
        ))
        .aggregate_with(
            AggregateFn {
                create: || 0u64,
                add: |n: &mut u64, _: i64| *n += 1,
                result: |n: &u64| *n,
                merge: |a: &mut u64, b: u64| *a += b,
            },
            CountPerWindow,
        )
        .name("q5 bids per auction")
        .uid("q5-counts")
        .key_by(|c: &(i64, i64, u64)| c.0)
        .process(HottestAuctions)
        .name("q5 hottest auctions")
        .uid("q5-hottest")
}

// ---- q7 -------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q7Row {
    pub auction: i64,
    pub price: i64,
    pub bidder: i64,
    pub date_time: i64,
    pub extra: String,
}

impl Row for Q7Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(
            out,
            "{}|{}|{}|{}|{}",
            self.auction, self.price, self.bidder, self.date_time, self.extra
        );
    }
}

/// Per tumbling window (keyed by its end): the highest price of the window's bids, the
/// bids at that price, and the bids made exactly at the window's end (the SQL's
/// `BETWEEN end - 10 s AND end` includes them, though they belong to the next window).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct HighestBids {
    max: Option<i64>,
    top: Vec<Bid>,
    at_end: Vec<Bid>,
}

const Q7_BIDS: ValueStateDescriptor<HighestBids> = ValueStateDescriptor::new("highest-bids");

#[derive(Clone)]
struct HighestBid;

impl KeyedProcessFunction<i64, (i64, Bid), Q7Row> for HighestBid {
    fn process_element(
        &mut self,
        (end, bid): (i64, Bid),
        ctx: &mut KeyedContext<'_, i64>,
        _: &mut Collector<'_, Q7Row>,
    ) {
        let mut first = false;
        let mut bid = Some(bid);
        ctx.value_state(&Q7_BIDS).update_with(|s| {
            first = s.is_none();
            modify_or_default(s, |state: &mut HighestBids| {
                let Some(bid) = bid.take() else { return };
                if bid.date_time == end {
                    state.at_end.push(bid);
                } else if state.max.is_none_or(|m| bid.price > m) {
                    state.max = Some(bid.price);
                    state.top.clear();
                    state.top.push(bid);
                } else if state.max == Some(bid.price) {
                    state.top.push(bid);
                }
            })
        });
        if first {
            // Fires once no bid at or before `end` can still come.
            ctx.timer_service().register_event_time_timer(end);
        }
    }

    fn on_timer(
        &mut self,
        _: i64,
        ctx: &mut KeyedContext<'_, i64>,
        out: &mut Collector<'_, Q7Row>,
    ) {
        let state = ctx.value_state(&Q7_BIDS);
        if let Some(HighestBids {
            max: Some(max),
            top,
            at_end,
        }) = state.value()
        {
            for b in top
                .into_iter()
                .chain(at_end.into_iter().filter(|b| b.price == max))
            {
                out.collect(Q7Row {
                    auction: b.auction,
                    price: b.price,
                    bidder: b.bidder,
                    date_time: b.date_time,
                    extra: b.extra,
                });
            }
        }
        state.clear();
    }
}

fn q7(bids: &DataStream<Bid>) -> DataStream<Q7Row> {
    bids.flat_map(|b: Bid| {
        let end = b.date_time - b.date_time.rem_euclid(TUMBLE_MS) + TUMBLE_MS;
        // A bid at a window boundary is also a candidate of the window that ends there.
        let previous = (b.date_time.rem_euclid(TUMBLE_MS) == 0).then(|| (b.date_time, b.clone()));
        std::iter::once((end, b)).chain(previous)
    })
    .name("q7 bid windows")
    .key_by(|(end, _): &(i64, Bid)| *end)
    .process(HighestBid)
    .name("q7 highest bids")
    .uid("q7-highest")
}

// ---- q8 -------------------------------------------------------------------------------

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Q8Row {
    pub id: i64,
    pub name: String,
    pub window_start: i64,
}

impl Row for Q8Row {
    fn write_row(&self, out: &mut String) {
        let _ = write!(out, "{}|{}|{}", self.id, self.name, self.window_start);
    }
}

fn q8(people: &DataStream<Person>, auctions: &DataStream<Auction>) -> DataStream<Q8Row> {
    // Only the columns the query reads go into window state.
    let people = people
        .map(|p: Person| (p.id, p.name, p.date_time))
        .name("people (id, name)");
    let sellers = auctions.map(|a: Auction| a.seller).name("sellers");
    people
        .co_group(&sellers)
        .where_key(|p: &(i64, String, i64)| p.0)
        .equal_to(|seller: &i64| *seller)
        .window(TumblingEventTimeWindows::of(Duration::from_millis(
            TUMBLE_MS as u64,
        )))
        .co_group_apply(
            |people: &[(i64, String, i64)], sellers: &[i64], out: &mut Collector<'_, Q8Row>| {
                if sellers.is_empty() {
                    return;
                }
                if let Some((id, name, time)) = people.first() {
                    out.collect(Q8Row {
                        id: *id,
                        name: name.clone(),
                        window_start: time - time.rem_euclid(TUMBLE_MS),
                    });
                }
            },
        )
        .name("q8")
}

#[cfg(test)]
mod tests {
    use super::super::CollectRows;
    use super::*;

    fn bid(auction: i64, price: i64, date_time: i64) -> Bid {
        Bid {
            auction,
            bidder: 1000 + price,
            price,
            date_time,
            extra: String::new(),
        }
    }

    fn auction(id: i64, category: i64, opens: i64, expires: i64) -> Auction {
        Auction {
            id,
            item_name: String::new(),
            description: String::new(),
            initial_bid: 1,
            reserve: 1,
            date_time: opens,
            expires,
            seller: 1000,
            category,
            extra: String::new(),
        }
    }

    /// Runs `query` over `events` (in this order, event time from each event) and returns
    /// its sorted canonical rows.
    fn rows<R: Row>(
        events: Vec<Event>,
        query: impl FnOnce(&DataStream<Event>) -> DataStream<R>,
    ) -> Vec<String> {
        let env = StreamEnv::new();
        env.set_parallelism(1);
        let events = env
            .from_collection(events)
            .assign_timestamps_and_watermarks(
                WatermarkStrategy::for_bounded_out_of_orderness(WATERMARK_DELAY)
                    .with_timestamp_assigner(|e: &Event| e.date_time()),
            );
        let sink = CollectRows::default();
        sink.attach(&query(&events));
        env.execute("nexmark query test").expect("the job runs");
        let mut rows = sink.rows();
        rows.sort();
        rows
    }

    #[test]
    fn q7_reports_the_top_bids_of_each_window_including_a_tie_at_its_end() {
        let events = vec![
            Event::Bid(bid(1, 5, 1_000)),
            Event::Bid(bid(2, 9, 2_000)),
            Event::Bid(bid(3, 9, 9_999)),
            // Starts the second window and, by `BETWEEN end - 10 s AND end`, also joins
            // the first window's maximum.
            Event::Bid(bid(4, 9, 10_000)),
            Event::Bid(bid(5, 3, 15_000)),
        ];
        assert_eq!(
            rows(events, |e| q7(&bids(e))),
            [
                "2|9|1009|2000|",
                "3|9|1009|9999|",
                "4|9|1009|10000|",
                "4|9|1009|10000|",
            ]
        );
    }

    #[test]
    fn q4_averages_the_winning_bids_within_each_auctions_time_per_category() {
        let events = vec![
            // Comes before its auction: waits for it, then counts.
            Event::Bid(bid(2, 251, 1_800)),
            Event::Auction(Box::new(auction(1, 10, 1_000, 5_000))),
            Event::Auction(Box::new(auction(2, 10, 1_000, 2_000))),
            Event::Auction(Box::new(auction(3, 11, 1_000, 2_000))),
            Event::Bid(bid(1, 100, 1_500)),
            Event::Bid(bid(2, 200, 1_500)),
            Event::Bid(bid(3, 50, 1_200)),
            Event::Bid(bid(1, 300, 4_000)),
            // After auction 1 expired: not a winning bid.
            Event::Bid(bid(1, 500, 6_000)),
        ];
        // Category 10: (300 + 251) / 2, truncated as SQL's AVG of a BIGINT.
        assert_eq!(
            rows(events, |e| {
                let (bids, auctions) = bids_and_auctions(e);
                q4(&auctions, &bids)
            }),
            ["10|275", "11|50"]
        );
    }

    #[test]
    fn q5_reports_every_auction_tied_for_most_bids_in_each_window() {
        let mut events = Vec::new();
        // Auctions 1 and 2 have two bids each in [0 s, 2 s), auction 3 one.
        for (auction, t) in [(1, 100), (1, 200), (2, 300), (2, 400), (3, 500)] {
            events.push(Event::Bid(bid(auction, 10, t)));
        }
        let rows = rows(events, |e| q5(&bids(e)));
        // The bids fall in the five sliding windows that end at 2, 4, 6, 8 and 10 s; rows
        // come sorted.
        let expected: Vec<String> = ["1|2", "2|2"]
            .into_iter()
            .flat_map(|row| [row; 5])
            .map(String::from)
            .collect();
        assert_eq!(rows, expected);
    }
}
