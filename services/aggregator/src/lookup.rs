//! Proof, one event at a time: `/api/v1/events/{id}` says where an event
//! is (which store, the Kafka record it came from, when it was written) or
//! that it was dead-lettered and why; `/api/v1/dead-letters` lists the dead
//! letters newest first, and `/api/v1/dead-letters/{partition}/{offset}`
//! shows one whole, as `scripts/requeue.py` sends it back.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use streamproc_event::schema::{id_schema, ID_RULE};
use streamproc_event::{EventId, EventTime, MAX_TIME_MS};
use streamproc_grid::{parse_natural, take, unparsable};
use streamproc_kit::error::Chain;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::{IntoParams, ToSchema};

use crate::dead_letters::{Completeness, DeadLetter, DeadLetters, Order};
use crate::error::ApiError;
use crate::schema::ErrorBody;
use crate::stores::{Found, Store, StoreError, StoredEvent};
use crate::AppState;

/// The parameters these endpoints read, as a 400 names them.
pub const PARAMETERS: [&str; 6] = ["id", "time", "limit", "before", "partition", "offset"];

/// Most dead letters on one page.
pub const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 50;

/// Where one event is.
#[derive(Debug, Serialize, ToSchema)]
pub struct Trace {
    /// The id looked up.
    pub id: String,
    /// The store that holds it, with the Kafka record it was read from and
    /// when it was written. One entry at most while the watermark stays
    /// the same (every event lands in exactly one store).
    pub stored: Vec<StoredEvent>,
    /// Its dead letters, newest first, among those the aggregator keeps.
    pub dead_letters: Vec<DeadLetter>,
    /// Where it was not looked for, and why.
    pub not_searched: Vec<NotSearched>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotSearched {
    /// `timescaledb`, `influxdb` or `dead_letters`.
    #[serde(rename = "in")]
    pub place: &'static str,
    pub reason: String,
}

/// `/api/v1/events/{id}`'s parameters, read by [`event`].
pub struct TraceParams;

impl IntoParams for TraceParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let id = ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(format!(
                "The event id, as event-api's receipt gives it: {ID_RULE}"
            )))
            .schema(Some(id_schema()))
            .build();
        vec![
            id,
            query_parameter(
                "time",
                "The event's time, Unix ms, as its receipt says. Without it InfluxDB is not \
             searched: a point is found by its time. TimescaleDB and the dead letters are \
             searched by id alone.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(MAX_TIME_MS)),
            ),
        ]
    }
}

fn query_parameter(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// `GET /api/v1/events/{id}?time=`
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    summary = "Where one event is: its store, the Kafka record it came from and when it was \
        written, or its dead letters and why",
    params(TraceParams),
    responses(
        (status = 200, description = "Found in a store or among the dead letters", body = Trace),
        (status = 400, body = ErrorBody,
            description = "The id or the time is not valid; parameter names which"),
        (status = 401, response = streamproc_kit::auth::Unauthorized),
        (status = 404, body = ErrorBody,
            description = "Not found in either store or the dead letters; message says where it \
                was not looked for (InfluxDB without time)"),
        (status = 503, body = ErrorBody,
            description = "Not found, and a store failed (message names it); DISABLE is set; or \
                the aggregator is busy or took longer than REQUEST_TIMEOUT"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let id = EventId::parse(&id)
        .map_err(|e| ApiError::BadParameter(unparsable("id", &id, e.to_string())))?;
    let [time] = take(&pairs, ["time"]).map_err(ApiError::BadParameter)?;
    let time = time
        .map(|t| parse_natural("time", &t, 0, MAX_TIME_MS))
        .transpose()
        .map_err(ApiError::BadParameter)?
        .map(|ms| EventTime::from_millis(ms).expect("within MAX_TIME_MS"));
    let stores = state.source.stores()?;
    let Found { high, low } = stores.find(&id, time).await;

    let mut trace = Trace {
        id: id.as_str().to_owned(),
        stored: Vec::new(),
        dead_letters: Vec::new(),
        not_searched: Vec::new(),
    };
    let mut failed: Vec<String> = Vec::new();
    let mut outcome =
        |store: Store, result: Option<Result<Option<StoredEvent>, StoreError>>| match result {
            Some(Ok(found)) => trace.stored.extend(found),
            Some(Err(error)) => {
                let reason = format!("{}: {}", store.name(), Chain(&error));
                failed.push(reason.clone());
                trace.not_searched.push(NotSearched {
                    place: store.name(),
                    reason,
                });
            }
            None => trace.not_searched.push(NotSearched {
                place: store.name(),
                reason: "no time given: InfluxDB finds a point by its time (give ?time=, the \
                    event's time in Unix ms)"
                    .to_owned(),
            }),
        };
    outcome(Store::TimescaleDb, Some(high));
    outcome(Store::InfluxDb, low);
    match &state.dead_letters {
        Some(letters) => {
            trace.dead_letters = letters.with_key(id.as_str());
            if let Some(reason) = incomplete(letters) {
                trace.not_searched.push(NotSearched {
                    place: "dead_letters",
                    reason,
                });
            }
        }
        None => trace.not_searched.push(NotSearched {
            place: "dead_letters",
            reason: crate::pipeline::WATCH_OFF.to_owned(),
        }),
    }

    if !trace.stored.is_empty() || !trace.dead_letters.is_empty() {
        return Ok(Json(trace).into_response());
    }
    if !failed.is_empty() {
        return Err(ApiError::StoresFailed(failed.join("; ")));
    }
    let mut message = "not found in either store or the dead letters".to_owned();
    for not in &trace.not_searched {
        message.push_str(&format!("; not searched in {}: {}", not.place, not.reason));
    }
    Err(ApiError::NotFound(message))
}

/// Why the kept dead letters may miss some, if they may.
fn incomplete(letters: &DeadLetters) -> Option<String> {
    let Completeness {
        caught_up,
        in_topic,
        error,
    } = letters.completeness();
    let kept = letters.kept_count();
    if let Some(error) = error {
        Some(format!("the dead-letter topic cannot be read: {error}"))
    } else if !caught_up {
        Some("the dead-letter topic is still being read".to_owned())
    } else if i64::try_from(kept).unwrap_or(i64::MAX) < in_topic {
        Some(format!(
            "only the newest {kept} of the topic's {in_topic} dead letters are kept \
             (DEAD_LETTERS_KEPT)"
        ))
    } else {
        None
    }
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Newest first.
    pub dead_letters: Vec<DeadLetter>,
    /// The path of the next page (older letters); absent on the last.
    pub next: Option<String>,
    /// Letters the aggregator keeps: the newest DEAD_LETTERS_KEPT.
    pub kept: usize,
    /// Records the dead-letter topic holds.
    pub in_topic: i64,
    /// Whether every record written to the topic up to the last look (every
    /// 2 s) has been read.
    pub caught_up: bool,
    /// Why the topic cannot be read, when it cannot.
    pub error: Option<String>,
}

/// `/api/v1/dead-letters`' query, read from the pairs by [`dead_letters`].
pub struct PageQuery;

impl IntoParams for PageQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            query_parameter(
                "limit",
                "Letters on the page.",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(MAX_PAGE))
                    .default(Some(DEFAULT_PAGE.into())),
            ),
            query_parameter(
                "before",
                "Only letters older than this: the previous page's next gives it.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(Order::CURSOR_PATTERN)),
            ),
        ]
    }
}

/// `GET /api/v1/dead-letters?limit=&before=`
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters",
    summary = "The newest dead letters, newest first, a page at a time",
    description = "Read from the dead-letter topic (KAFKA_DLQ_TOPIC); the aggregator keeps the \
        newest DEAD_LETTERS_KEPT (10 000). Each letter names where it is in the dead-letter \
        topic, the record it was (source), the reason, and up to 1 024 bytes of its payload.",
    params(PageQuery),
    responses(
        (status = 200, description = "A page", body = DeadLetterPage),
        (status = 400, body = ErrorBody,
            description = "limit or before is not valid or given twice; parameter names it"),
        (status = 401, response = streamproc_kit::auth::Unauthorized),
        (status = 503, body = ErrorBody,
            description = "DISABLE is set or PIPELINE_WATCH is false (the aggregator does not \
                read Kafka); or it is busy"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let [limit, before] = take(&pairs, ["limit", "before"]).map_err(ApiError::BadParameter)?;
    let limit = limit
        .map(|l| parse_natural("limit", &l, 1, MAX_PAGE))
        .transpose()
        .map_err(ApiError::BadParameter)?
        .unwrap_or(DEFAULT_PAGE);
    let before = before
        .map(|b| {
            Order::parse_cursor(&b).ok_or_else(|| {
                ApiError::BadParameter(unparsable(
                    "before",
                    &b,
                    "expected <time>-<partition>-<offset>, as a page's next gives it",
                ))
            })
        })
        .transpose()?;
    let letters = reader(&state)?;
    let limit = usize::try_from(limit).expect("at most MAX_PAGE");
    let (page, more) = letters.page(before, limit);
    let next = match (more, page.last()) {
        (true, Some(last)) => Some(format!(
            "/api/v1/dead-letters?limit={limit}&before={}",
            last.order().cursor()
        )),
        _ => None,
    };
    let Completeness {
        caught_up,
        in_topic,
        error,
    } = letters.completeness();
    Ok(Json(DeadLetterPage {
        dead_letters: page,
        next,
        kept: letters.kept_count(),
        in_topic,
        caught_up,
        error,
    })
    .into_response())
}

/// `GET /api/v1/dead-letters/{partition}/{offset}`
#[utoipa::path(
    get,
    path = "/api/v1/dead-letters/{partition}/{offset}",
    summary = "One dead letter, by its place in the dead-letter topic",
    params(
        ("partition" = i32, Path, minimum = 0, description = "Its partition in the dead-letter topic"),
        ("offset" = i64, Path, minimum = 0, description = "Its offset there"),
    ),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetter),
        (status = 400, body = ErrorBody, description = "partition or offset is not a number"),
        (status = 401, response = streamproc_kit::auth::Unauthorized),
        (status = 404, body = ErrorBody,
            description = "Not among the dead letters kept (DEAD_LETTERS_KEPT)"),
        (status = 503, body = ErrorBody,
            description = "DISABLE is set or PIPELINE_WATCH is false; or the aggregator is busy"),
    ),
    security(("bearer" = []), ()),
)]
pub async fn dead_letter(
    State(state): State<AppState>,
    Path((partition, offset)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let partition = parse_natural("partition", &partition, 0, i64::from(i32::MAX))
        .map_err(ApiError::BadParameter)?;
    let offset = parse_natural("offset", &offset, 0, i64::MAX).map_err(ApiError::BadParameter)?;
    let partition = i32::try_from(partition).expect("at most i32::MAX");
    let letters = reader(&state)?;
    match letters.at(partition, offset) {
        Some(letter) => Ok(Json(letter).into_response()),
        None => Err(ApiError::NotFound(format!(
            "no dead letter at partition {partition}, offset {offset} among the {} kept",
            letters.kept_count()
        ))),
    }
}

fn reader(state: &AppState) -> Result<&DeadLetters, ApiError> {
    state.source.stores()?;
    state
        .dead_letters
        .as_ref()
        .ok_or(ApiError::Off(crate::pipeline::WATCH_OFF))
}
