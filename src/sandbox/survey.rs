//! The simulated survey system: surveys sent for closed ROs (created by
//! `ro_to_survey`), listed by RO and deleted explicitly, as `/survey/api/*` routes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::Value;

use super::faults::System;
use super::http::{Record, delete_record, get_record, guarded, list_records};
use super::state::{Shared, Survey, World};

/// Deleting a survey deletes just that record.
impl Record for Survey {
    const WHAT: &'static str = "survey";

    fn table(world: &World) -> &BTreeMap<String, Self> {
        &world.surveys
    }

    fn table_mut(world: &mut World) -> &mut BTreeMap<String, Self> {
        &mut world.surveys
    }

    fn render(&self, _world: &World) -> Value {
        self.to_json()
    }

    /// `?ro=`: the surveys sent for one RO.
    fn matches(&self, query: &HashMap<String, String>) -> bool {
        query.get("ro").is_none_or(|r| *r == self.ro)
    }
}

/// `/survey/api/*`, behind bearer auth and the survey system's faults.
pub fn router(shared: Arc<Shared>) -> Router {
    let routes = Router::new()
        .route("/survey/api/surveys", get(list_records::<Survey>))
        .route(
            "/survey/api/surveys/{id}",
            get(get_record::<Survey>).delete(delete_record::<Survey>),
        );
    guarded(shared, System::Survey, routes)
}
