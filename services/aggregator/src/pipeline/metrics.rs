//! The pipeline's health on `/metrics`, for alerting without reading the
//! JSON: each stage's status as a number, and the consumers' lag.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::snapshot::{Stage, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

pub struct PipelineMetrics {
    status: Family<StageLabels, Gauge>,
    lag_events: Family<StageLabels, Gauge>,
    lag_seconds: Family<StageLabels, Gauge<f64, AtomicU64>>,
}

impl PipelineMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            status: Family::default(),
            lag_events: Family::default(),
            lag_seconds: Family::default(),
        };
        registry.register(
            "pipeline_stage_status",
            "Each stage's status at the last probe: 0 ok, 1 degraded, 2 down",
            metrics.status.clone(),
        );
        registry.register(
            "pipeline_lag_events",
            "Records after a consumer group's committed offsets",
            metrics.lag_events.clone(),
        );
        registry.register(
            "pipeline_lag_seconds",
            "Seconds since the oldest record a consumer group has not committed reached the topic",
            metrics.lag_seconds.clone(),
        );
        metrics
    }

    pub fn record(&self, stages: &[Stage]) {
        for stage in stages {
            let labels = StageLabels { stage: stage.name };
            let status = match stage.status {
                Status::Ok => 0,
                Status::Degraded => 1,
                Status::Down => 2,
            };
            self.status.get_or_create(&labels).set(status);
            if let Some(lag) = stage.lag_events {
                self.lag_events.get_or_create(&labels).set(lag);
            }
            if let Some(seconds) = stage.lag_seconds {
                self.lag_seconds.get_or_create(&labels).set(seconds);
            }
        }
    }
}
