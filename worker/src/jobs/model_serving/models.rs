//! Models implemented in Rust and loaded from JSON: linear regression, logistic
//! regression and a decision tree over the eleven wine features. Loading checks
//! everything scoring relies on, so a loaded model always scores (no panics, no NaN from
//! shape errors).

use crate::jobs::model_serving::records::{FEATURES, ModelToServe, WINE, WineRecord};
use serde::{Deserialize, Serialize};

/// The model types, as the `type` field of a model's JSON names them.
pub const MODEL_TYPES: &[&str] = &["linear-regression", "logistic-regression", "decision-tree"];

/// A node of a decision tree: a split (`x[feature] <= threshold` goes left) or a leaf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TreeNode {
    Split {
        feature: String,
        threshold: f64,
        left: usize,
        right: usize,
    },
    Leaf {
        value: f64,
    },
}

/// A model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Model {
    /// `intercept + Σ coefficients[i] · x[i]`.
    LinearRegression {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    /// `1 / (1 + e^-(intercept + Σ coefficients[i] · x[i]))`: the probability of the
    /// positive class.
    LogisticRegression {
        intercept: f64,
        coefficients: Vec<f64>,
    },
    /// Nodes by index, the root first; children come after their parent.
    DecisionTree { nodes: Vec<TreeNode> },
}

fn linear(intercept: f64, coefficients: &[f64], x: &[f64; 11]) -> f64 {
    let mut acc = intercept;
    for (c, v) in coefficients.iter().zip(x) {
        acc += c * v;
    }
    acc
}

fn feature_index(name: &str) -> Option<usize> {
    FEATURES.iter().position(|f| *f == name)
}

impl Model {
    /// Loads and checks a model from its JSON form; the error says what is wrong and
    /// what is accepted.
    pub fn from_json(value: &serde_json::Value) -> Result<Model, String> {
        let kind = value.get("type").and_then(|t| t.as_str()).ok_or_else(|| {
            format!(
                "the model has no \"type\"; accepted: {}",
                MODEL_TYPES.join(", ")
            )
        })?;
        if !MODEL_TYPES.contains(&kind) {
            return Err(format!(
                "unknown model type '{kind}'; accepted: {}",
                MODEL_TYPES.join(", ")
            ));
        }
        let model: Model = serde_json::from_value(value.clone())
            .map_err(|e| format!("not a valid {kind} model: {e}"))?;
        model.validate()?;
        Ok(model)
    }

    fn validate(&self) -> Result<(), String> {
        match self {
            Model::LinearRegression {
                intercept,
                coefficients,
            }
            | Model::LogisticRegression {
                intercept,
                coefficients,
            } => {
                let kind = if matches!(self, Model::LinearRegression { .. }) {
                    "linear-regression"
                } else {
                    "logistic-regression"
                };
                if coefficients.len() != FEATURES.len() {
                    return Err(format!(
                        "a {kind} model needs {} coefficients, one per feature ({}), got {}",
                        FEATURES.len(),
                        FEATURES.join(", "),
                        coefficients.len()
                    ));
                }
                if !intercept.is_finite() || coefficients.iter().any(|c| !c.is_finite()) {
                    return Err(format!(
                        "a {kind} model needs finite numbers as intercept and coefficients"
                    ));
                }
                Ok(())
            }
            Model::DecisionTree { nodes } => {
                if nodes.is_empty() {
                    return Err("a decision-tree model needs at least one node".into());
                }
                for (i, node) in nodes.iter().enumerate() {
                    match node {
                        TreeNode::Leaf { value } if !value.is_finite() => {
                            return Err(format!(
                                "decision-tree node {i}: the leaf value must be a finite number"
                            ));
                        }
                        TreeNode::Leaf { .. } => {}
                        TreeNode::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        } => {
                            if feature_index(feature).is_none() {
                                return Err(format!(
                                    "decision-tree node {i}: unknown feature '{feature}'; accepted: {}",
                                    FEATURES.join(", ")
                                ));
                            }
                            if !threshold.is_finite() {
                                return Err(format!(
                                    "decision-tree node {i}: the threshold must be a finite number"
                                ));
                            }
                            // Children after their parent: every path ends at a leaf.
                            for child in [left, right] {
                                if *child <= i || *child >= nodes.len() {
                                    return Err(format!(
                                        "decision-tree node {i}: child {child} must be a later node (between {} and {})",
                                        i + 1,
                                        nodes.len().saturating_sub(1)
                                    ));
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The model's score for `record`.
    pub fn score(&self, record: &WineRecord) -> f64 {
        let x = record.features();
        match self {
            Model::LinearRegression {
                intercept,
                coefficients,
            } => linear(*intercept, coefficients, &x),
            Model::LogisticRegression {
                intercept,
                coefficients,
            } => 1.0 / (1.0 + (-linear(*intercept, coefficients, &x)).exp()),
            Model::DecisionTree { nodes } => {
                let mut i = 0;
                // Validation guarantees children after parents, so this ends.
                while let Some(node) = nodes.get(i) {
                    match node {
                        TreeNode::Leaf { value } => return *value,
                        TreeNode::Split {
                            feature,
                            threshold,
                            left,
                            right,
                        } => {
                            let v = feature_index(feature).map_or(f64::NAN, |f| x[f]);
                            i = if v <= *threshold { *left } else { *right };
                        }
                    }
                }
                f64::NAN
            }
        }
    }
}

/// A model ready to score, as kept in state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServingModel {
    pub name: String,
    pub description: String,
    pub data_type: String,
    pub model: Model,
}

impl ServingModel {
    /// Loads a model to serve; the error is the reason it cannot be used.
    pub fn load(m: &ModelToServe) -> Result<ServingModel, String> {
        if m.name.trim().is_empty() {
            return Err("the model has no name; give it one (\"name\": \"wine-linear\")".into());
        }
        Ok(ServingModel {
            name: m.name.clone(),
            description: m.description.clone(),
            data_type: m.data_type.clone(),
            model: Model::from_json(&m.model)?,
        })
    }
}

/// Intercept of the ordinary-least-squares fit of red wine quality on all eleven
/// features (Cortez et al., the UCI red wine data, 1,599 samples).
pub const OLS_INTERCEPT: f64 = 21.965;
/// Coefficients of that fit, in [`FEATURES`] order.
pub const OLS_COEFFICIENTS: [f64; 11] = [
    0.02499, -1.0836, -0.1826, 0.01633, -1.874, 0.004361, -0.003265, -17.88, -0.4137, 0.9163,
    0.2762,
];

/// The logistic model of "good wine" (quality ≥ 6) is derived from the OLS fit, not fitted
/// separately: `P(good) = σ(3 · (predicted quality − 5.5))`, i.e. the OLS coefficients
/// scaled by 3 and the intercept `3 · (21.965 − 5.5)`.
pub const LOGISTIC_SCALE: f64 = 3.0;

fn to_json(model: &Model) -> serde_json::Value {
    serde_json::to_value(model).unwrap_or(serde_json::Value::Null)
}

/// The linear-regression model (the OLS fit).
pub fn linear_model() -> ModelToServe {
    ModelToServe {
        name: "wine-linear".into(),
        description: "OLS fit of red wine quality on the 11 features".into(),
        data_type: WINE.into(),
        model: to_json(&Model::LinearRegression {
            intercept: OLS_INTERCEPT,
            coefficients: OLS_COEFFICIENTS.to_vec(),
        }),
    }
}

/// The logistic-regression model of P(quality ≥ 6).
pub fn logistic_model() -> ModelToServe {
    ModelToServe {
        name: "wine-logistic".into(),
        description: "P(quality >= 6) = sigmoid(3 * (OLS quality - 5.5))".into(),
        data_type: WINE.into(),
        model: to_json(&Model::LogisticRegression {
            intercept: LOGISTIC_SCALE * (OLS_INTERCEPT - 5.5),
            coefficients: OLS_COEFFICIENTS
                .iter()
                .map(|c| c * LOGISTIC_SCALE)
                .collect(),
        }),
    }
}

/// A small decision tree on the three features that matter most for red wine (alcohol,
/// volatile acidity, sulphates); leaves are typical qualities. Illustrative, not fitted.
pub fn tree_model() -> ModelToServe {
    let split = |feature: &str, threshold: f64, left: usize, right: usize| TreeNode::Split {
        feature: feature.into(),
        threshold,
        left,
        right,
    };
    let leaf = |value: f64| TreeNode::Leaf { value };
    ModelToServe {
        name: "wine-tree".into(),
        description: "depth-3 decision tree on alcohol, volatile acidity and sulphates".into(),
        data_type: WINE.into(),
        model: to_json(&Model::DecisionTree {
            nodes: vec![
                split("alcohol", 10.25, 1, 2),
                split("sulphates", 0.575, 3, 4),
                split("volatile_acidity", 0.425, 5, 6),
                leaf(5.05),
                leaf(5.45),
                split("alcohol", 11.55, 7, 8),
                leaf(5.65),
                leaf(6.1),
                leaf(6.6),
            ],
        }),
    }
}
