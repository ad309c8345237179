//! Deterministic transactions and the built-in rules of the default run.
//!
//! Transaction `i` is a pure function of `i` (splitmix64 of a seeded index), so every run
//! and every parallelism generates the same records. Most payments are ordinary; three
//! patterns make the built-in rules fire a moderate number of times:
//! - every 1,000 transactions, 12 in a row go to one beneficiary (rule 2: more than 10
//!   payments to a beneficiary within an hour);
//! - 0.5% of payments are large, 600 to 2,000 (rule 1: more than 500 from one payee to
//!   one beneficiary within 20 minutes);
//! - payee 7 is a "whale" making 1.5% of all payments, of 100 to 300 each (rule 3: more than
//!   20,000 from one payee within a day).

use crate::jobs::fraud::model::{PaymentType, Transaction};

/// Event time of transaction 0: 2024-01-01T00:00:00Z.
pub const START_MS: i64 = 1_704_067_200_000;
/// Event time between consecutive transactions.
pub const INTERVAL_MS: i64 = 6_000;

const SEED: u64 = 0x5EED_F4A0_D0C5_2024;

/// The splitmix64 finaliser: a fast, well-mixed hash of a 64-bit value.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `n`-th random draw for transaction `i`.
fn draw(i: u64, n: u64) -> u64 {
    splitmix64(SEED ^ i.wrapping_mul(8).wrapping_add(n))
}

/// An amount in cents between `lo` and `hi` (inclusive), as a number of currency units.
fn cents(h: u64, lo: u64, hi: u64) -> f64 {
    (lo * 100 + h % ((hi - lo) * 100 + 1)) as f64 / 100.0
}

/// Transaction `i` of the generated stream.
pub fn generated_transaction(i: u64) -> Transaction {
    let event_time = START_MS + i as i64 * INTERVAL_MS;
    let (mut payee_id, mut beneficiary_id) = (1 + draw(i, 0) % 100, 1 + draw(i, 1) % 200);
    let kind = draw(i, 2) % 1000;
    let mut payment_amount = cents(draw(i, 3), 5, 100);
    if (500..512).contains(&(i % 1000)) {
        beneficiary_id = 1 + (i / 1000 * 37) % 200;
    } else if kind < 5 {
        payment_amount = cents(draw(i, 4), 600, 2000);
    } else if kind < 20 {
        payee_id = 7;
        payment_amount = cents(draw(i, 4), 100, 300);
    }
    Transaction {
        transaction_id: i,
        event_time,
        payee_id,
        beneficiary_id,
        payment_amount,
        payment_type: if draw(i, 5) % 10 < 7 {
            PaymentType::Crd
        } else {
            PaymentType::Csh
        },
        ingestion_timestamp: event_time,
    }
}

/// The built-in rules, in the demo's JSON form.
pub const DEFAULT_RULES: &[&str] = &[
    r#"{"ruleId":1,"ruleState":"ACTIVE","groupingKeyNames":["payeeId","beneficiaryId"],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":500,"windowMinutes":20}"#,
    r#"{"ruleId":2,"ruleState":"ACTIVE","groupingKeyNames":["beneficiaryId"],"aggregateFieldName":"COUNT_FLINK","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":10,"windowMinutes":60}"#,
    r#"{"ruleId":3,"ruleState":"ACTIVE","groupingKeyNames":["payeeId"],"aggregateFieldName":"paymentAmount","aggregatorFunctionType":"SUM","limitOperatorType":"GREATER","limit":20000,"windowMinutes":1440}"#,
];
