//! What the query endpoints answer with: each store's part (its data, or
//! why there is none), the series, the totals and the Go version's `/api`.

use serde::Serialize;
use streamproc_grid::Grid;
use streamproc_kit::error::Chain;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::series::{zero_filled, Point};
use crate::stores::{Both, Store, StoreError, Stores, Totals};

/// One store's part of an answer: its data, or why there is none.
#[derive(Debug, Serialize)]
pub struct Part<T> {
    pub store: Store,
    pub available: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The schema of a `Part<T>`: `store`, `available`, `error`, and the fields
/// of `T`, present only when the store answered.
fn part_schema<T: ToSchema>() -> RefOr<Schema> {
    let available = ObjectBuilder::new()
        .schema_type(Type::Boolean)
        .description(Some(
            "false when the store failed or timed out; error says why and the data is absent",
        ));
    let error = ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "Why the store gave no answer (when available is false)",
        ));
    let part = ObjectBuilder::new()
        .schema_type(Type::Object)
        .required("store")
        .required("available")
        .property("store", Store::schema())
        .property("available", available)
        .property("error", error);
    // `T`'s fields are flattened into the part, and absent when it failed.
    let data = match T::schema() {
        RefOr::T(Schema::Object(data)) => data.properties,
        _ => unreachable!("{} is a struct", T::name()),
    };
    data.into_iter()
        .fold(part, |part, (name, schema)| part.property(name, schema))
        .into()
}

impl<T> Part<T> {
    pub(crate) fn new<U>(
        store: Store,
        result: Result<U, StoreError>,
        data: impl FnOnce(U) -> T,
    ) -> Self {
        match result {
            Ok(value) => Self {
                store,
                available: true,
                data: Some(data(value)),
                error: None,
            },
            Err(error) => Self {
                store,
                available: false,
                data: None,
                error: Some(format!("{}: {}", store.name(), Chain(&error))),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Points {
    /// One per bucket, empty ones included, oldest first.
    pub points: Vec<Point>,
}

/// Both series on one grid; also the payload of each stream event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Series)]
pub struct SeriesBody {
    /// Start of the first bucket, Unix ms.
    pub from: i64,
    /// End of the last bucket (exclusive), Unix ms.
    pub to: i64,
    /// Bucket width in ms.
    pub step: i64,
    /// Events with amount above the watermark, from TimescaleDB.
    #[schema(schema_with = part_schema::<Points>)]
    pub high: Part<Points>,
    /// The other events, from InfluxDB.
    #[schema(schema_with = part_schema::<Points>)]
    pub low: Part<Points>,
}

impl SeriesBody {
    pub async fn query(stores: &Stores, grid: &Grid) -> Self {
        let Both { high, low } = stores.buckets(grid).await;
        let points = |buckets: Vec<_>| Points {
            points: zero_filled(grid, &buckets),
        };
        Self {
            from: grid.start_ms(),
            to: grid.end_ms(),
            step: grid.step_ms(),
            high: Part::new(Store::TimescaleDb, high, points),
            low: Part::new(Store::InfluxDb, low, points),
        }
    }

    pub(crate) fn complete(&self) -> bool {
        self.high.available && self.low.available
    }
}

/// Everything each store holds.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Totals)]
pub struct TotalsBody {
    /// TimescaleDB's.
    #[schema(schema_with = part_schema::<Totals>)]
    pub high: Part<Totals>,
    /// InfluxDB's.
    #[schema(schema_with = part_schema::<Totals>)]
    pub low: Part<Totals>,
}

/// `/api`'s answer.
#[derive(Serialize, ToSchema)]
pub struct Legacy {
    /// `ok`, or that DISABLE is set.
    pub(crate) message: &'static str,
    /// Both types for every bucket start, sorted by time.
    pub(crate) points: Vec<LegacyPoint>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LegacyPoint {
    /// Bucket start, Unix ms.
    pub(crate) time: i64,
    pub(crate) count: u64,
    #[serde(rename = "type")]
    #[schema(inline)]
    pub(crate) kind: Kind,
}

/// Which series a point of `/api` counts.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    Low,
    High,
}
