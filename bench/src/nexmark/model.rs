//! The Nexmark records: people who sell and bid, auctions, and bids.
//!
//! Times are milliseconds since the epoch. The canonical text of each record (`Display`)
//! is what the generator checksum covers; Flink's port prints the same text.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A new user of the auction site.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub id: i64,
    pub name: String,
    pub email_address: String,
    pub credit_card: String,
    pub city: String,
    pub state: String,
    pub date_time: i64,
    pub extra: String,
}

/// A new auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    pub id: i64,
    pub item_name: String,
    pub description: String,
    pub initial_bid: i64,
    pub reserve: i64,
    pub date_time: i64,
    pub expires: i64,
    pub seller: i64,
    pub category: i64,
    pub extra: String,
}

/// A bid on an auction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    pub auction: i64,
    pub bidder: i64,
    pub price: i64,
    pub date_time: i64,
    pub extra: String,
}

/// One event of the stream. People and auctions are rare (4 in 50) and large, so they are
/// boxed: the common case, a bid, then moves as a small value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Person(Box<Person>),
    Auction(Box<Auction>),
    Bid(Bid),
}

impl Event {
    /// The event time.
    #[inline]
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }

    pub fn into_person(self) -> Option<Person> {
        match self {
            Event::Person(p) => Some(*p),
            _ => None,
        }
    }

    pub fn into_auction(self) -> Option<Auction> {
        match self {
            Event::Auction(a) => Some(*a),
            _ => None,
        }
    }

    pub fn into_bid(self) -> Option<Bid> {
        match self {
            Event::Bid(b) => Some(b),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Person(p) => write!(
                f,
                "P|{}|{}|{}|{}|{}|{}|{}|{}",
                p.id, p.name, p.email_address, p.credit_card, p.city, p.state, p.date_time, p.extra
            ),
            Event::Auction(a) => write!(
                f,
                "A|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                a.id,
                a.item_name,
                a.description,
                a.initial_bid,
                a.reserve,
                a.date_time,
                a.expires,
                a.seller,
                a.category,
                a.extra
            ),
            Event::Bid(b) => write!(
                f,
                "B|{}|{}|{}|{}|{}",
                b.auction, b.bidder, b.price, b.date_time, b.extra
            ),
        }
    }
}
