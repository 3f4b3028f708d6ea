//! The CostMeter's sink, shared with the edge so that the requests refused before the meter
//! (see [`crate::edge`]'s refused log) become records in the same sink.

use std::sync::Arc;

use super::{CostMeterLayer, CostSink};

impl CostMeterLayer {
    /// The sink records go to, if any.
    pub(crate) fn sink_handle(&self) -> Option<Arc<dyn CostSink>> {
        self.config.sink.clone()
    }
}
