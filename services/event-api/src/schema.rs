//! The request body's schema and description, named by `ingest`'s
//! `#[utoipa::path]`: built from the limits' defaults and the event's wire
//! schema, so the document states what the code enforces.

use streamproc_event::schema::EventSchema;
use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::config::{
    DEFAULT_BODY_READ_TIMEOUT, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_EVENTS_PER_REQUEST,
};

/// The request body's description.
pub fn body_description() -> String {
    format!(
        "At most MAX_BODY_BYTES (default {DEFAULT_MAX_BODY_BYTES}) bytes, sent within \
         BODY_READ_TIMEOUT (default {DEFAULT_BODY_READ_TIMEOUT}), holding 1 to \
         MAX_EVENTS_PER_REQUEST (default {DEFAULT_MAX_EVENTS_PER_REQUEST}) events. The \
         Content-Type picks the format; parameters such as `; charset=utf-8` are allowed."
    )
}

/// An `application/json` body: an array of events, or one event.
pub struct JsonBatch;

impl ToSchema for JsonBatch {}

impl PartialSchema for JsonBatch {
    fn schema() -> RefOr<Schema> {
        let max_items = usize::try_from(DEFAULT_MAX_EVENTS_PER_REQUEST).unwrap_or(usize::MAX);
        OneOfBuilder::new()
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name(EventSchema::name()))
                    .min_items(Some(1))
                    .max_items(Some(max_items)),
            )
            .item(Ref::from_schema_name(EventSchema::name()))
            .into()
    }
}
