//! The records of model serving: wine samples to score (the UCI wine-quality features),
//! models to serve, scores, and rejected models.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The data type of wine records, and the key models are served by.
pub const WINE: &str = "wine";

/// The eleven physico-chemical features of the UCI wine-quality dataset, in its column
/// order (model coefficients follow it).
pub const FEATURES: [&str; 11] = [
    "fixed_acidity",
    "volatile_acidity",
    "citric_acid",
    "residual_sugar",
    "chlorides",
    "free_sulfur_dioxide",
    "total_sulfur_dioxide",
    "density",
    "ph",
    "sulphates",
    "alcohol",
];

fn wine() -> String {
    WINE.to_string()
}

/// A wine sample (the book's `WineRecord`). `id` numbers records so that scores can be
/// matched with them (the row of a file, or the index of a generated record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WineRecord {
    #[serde(default)]
    pub id: u64,
    pub fixed_acidity: f64,
    pub volatile_acidity: f64,
    pub citric_acid: f64,
    pub residual_sugar: f64,
    pub chlorides: f64,
    pub free_sulfur_dioxide: f64,
    pub total_sulfur_dioxide: f64,
    pub density: f64,
    pub ph: f64,
    pub sulphates: f64,
    pub alcohol: f64,
    #[serde(default = "wine")]
    pub data_type: String,
}

impl WineRecord {
    /// A record from the eleven features in [`FEATURES`] order.
    pub fn from_features(id: u64, f: [f64; 11]) -> Self {
        WineRecord {
            id,
            fixed_acidity: f[0],
            volatile_acidity: f[1],
            citric_acid: f[2],
            residual_sugar: f[3],
            chlorides: f[4],
            free_sulfur_dioxide: f[5],
            total_sulfur_dioxide: f[6],
            density: f[7],
            ph: f[8],
            sulphates: f[9],
            alcohol: f[10],
            data_type: wine(),
        }
    }

    /// The features in [`FEATURES`] order.
    pub fn features(&self) -> [f64; 11] {
        [
            self.fixed_acidity,
            self.volatile_acidity,
            self.citric_acid,
            self.residual_sugar,
            self.chlorides,
            self.free_sulfur_dioxide,
            self.total_sulfur_dioxide,
            self.density,
            self.ph,
            self.sulphates,
            self.alcohol,
        ]
    }

    /// Parses a line of the UCI CSV (`;`-separated, an optional 12th `quality` column,
    /// quotes allowed) or a JSON object. The CSV header and empty lines give `None`.
    pub fn parse_line(line: &str) -> Result<Option<WineRecord>, String> {
        let line = line.trim();
        if line.is_empty() {
            return Ok(None);
        }
        if line.starts_with('{') {
            return serde_json::from_str(line).map(Some).map_err(|e| {
                format!(
                    "not a JSON wine record: {e}; expected {{\"fixed_acidity\":7.4, … ,\"alcohol\":9.4}} with the fields {}",
                    FEATURES.join(", ")
                )
            });
        }
        let cells: Vec<&str> = line
            .split(';')
            .map(|c| c.trim().trim_matches('"').trim())
            .collect();
        if cells
            .first()
            .is_some_and(|c| c.to_ascii_lowercase().contains("acidity"))
        {
            return Ok(None);
        }
        if !(11..=12).contains(&cells.len()) {
            return Err(format!(
                "expected 11 ';'-separated features ({}) and an optional quality, got {} fields",
                FEATURES.join(";"),
                cells.len()
            ));
        }
        let mut f = [0.0; 11];
        for (i, slot) in f.iter_mut().enumerate() {
            *slot = cells[i]
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    format!(
                        "column {} ({}) '{}' is not a number",
                        i + 1,
                        FEATURES[i],
                        cells[i]
                    )
                })?;
        }
        Ok(Some(WineRecord::from_features(0, f)))
    }
}

/// A model to serve (the book's `ModelToServe`): `model` is the JSON form of a
/// [`Model`](super::models::Model), checked when it arrives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelToServe {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "wine")]
    pub data_type: String,
    pub model: serde_json::Value,
}

/// A record's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingResult {
    pub record_id: u64,
    pub data_type: String,
    pub model_name: String,
    /// The predicted quality (regression, tree) or the probability of a good wine
    /// (logistic regression).
    pub score: f64,
}

impl fmt::Display for ServingResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} #{}: {:.4} by {}",
            self.data_type, self.record_id, self.score, self.model_name
        )
    }
}

/// A model that could not be loaded; the model in use stays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedModel {
    pub name: String,
    pub data_type: String,
    pub error: String,
}

impl fmt::Display for RejectedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "REJECTED model '{}' for {}: {}",
            self.name, self.data_type, self.error
        )
    }
}
