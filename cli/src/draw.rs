//! `tcbot draw`: a group's lucky draw. Closing it reads every entrant, picks the winners with a
//! recorded seed and generator, and keeps the list it drew from, so `show` can re-check it.

use crate::ctx::{Ctx, Fail, Res, op};
use crate::progress::Progress;
use shared::bus::{Bus, BusEvent, DRAW_CLOSED, EventBridge, stable_id};
use shared::stats::{Draw, GENERATOR, entrants, pick_winners};
use shared::store::{DynamoStore, Store};
use std::sync::Arc;

/// Run a lucky draw in a group
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Start a draw: messages containing KEYWORD enter
    Open {
        /// The group ID
        group: String,
        /// The word that enters a message's sender
        keyword: String,
    },
    /// Close the draw and pick the winners (the list and the seed are kept)
    Close {
        /// The group ID
        group: String,
        /// How many winners (each user wins at most once)
        #[arg(long, value_name = "N", default_value_t = 1)]
        winners: usize,
        /// The seed [default: the clock's nanoseconds; recorded either way]
        #[arg(long)]
        seed: Option<u64>,
        /// The stack's event bus: the result is published there as `Draw Closed` (the
        /// stack's EventBusName output)
        #[arg(long, env = "TCBOT_EVENT_BUS_NAME", value_name = "NAME")]
        bus: Option<String>,
    },
    /// The draw, its entrants, seed and winners, re-checked
    Show {
        /// The group ID
        group: String,
    },
}

async fn current(store: &DynamoStore, group: &str) -> Res<Option<Draw>> {
    match store.get_doc(&Draw::key(group)).await.map_err(op)? {
        Some(doc) => serde_json::from_str::<Draw>(&doc).map(Some).map_err(op),
        None => Ok(None),
    }
}

async fn save(store: &DynamoStore, group: &str, d: &Draw) -> Res<()> {
    let doc = serde_json::to_string(d).map_err(op)?;
    store.put_doc(&Draw::key(group), &doc, None).await.map_err(op)
}

pub async fn run(ctx: &Ctx, cmd: &Cmd) -> Res<()> {
    let store = ctx.store().await?;
    match cmd {
        Cmd::Open { group, keyword } => {
            if current(&store, group).await?.is_some_and(|d| d.open) {
                return Err(Fail::Op(format!("a draw is already open in {group}; close it first")));
            }
            let d = Draw {
                id: shared::store::now_ms().to_string(),
                keyword: keyword.clone(),
                open: true,
                seed: None,
                winners: vec![],
                entrants: vec![],
                generator: None,
            };
            save(&store, group, &d).await?;
            println!("draw {} open in {group}: messages containing {keyword:?} enter", d.id);
        }
        Cmd::Close { group, winners, seed, bus } => {
            let Some(mut d) = current(&store, group).await?.filter(|d| d.open) else {
                return Err(Fail::Op(format!("no open draw in {group}")));
            };
            let seed = seed.unwrap_or_else(clock_seed);
            let mut progress = Progress::stderr();
            progress.show(&format!("reading the entrants of draw {}…", d.id));
            d.entrants = entrants(&store, group, &d.id).await.map_err(op)?;
            progress.show(&format!("{} entrant(s); drawing {winners} winner(s)…", d.entrants.len()));
            d.open = false;
            d.seed = Some(seed);
            d.generator = Some(GENERATOR.to_owned());
            d.winners = pick_winners(&d.entrants, *winners, seed);
            progress.show(&format!("saving the result of draw {}…", d.id));
            save(&store, group, &d).await?;
            progress.clear();
            println!("draw {} closed: {} entrant(s), seed {seed}", d.id, d.entrants.len());
            for w in &d.winners {
                println!("winner: {w}");
            }
            if let Some(bus) = bus.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
                publish_closed(ctx, bus, group, &d).await?;
                println!("published to {bus} as {:?}", DRAW_CLOSED);
            }
        }
        Cmd::Show { group } => {
            let Some(d) = current(&store, group).await? else {
                return Err(Fail::Op(format!("no draw in {group}")));
            };
            // A closed draw is shown with the list it drew from (draws closed before that was
            // kept show today's list).
            let people = match &d.generator {
                Some(_) => d.entrants.clone(),
                None => entrants(&store, group, &d.id).await.map_err(op)?,
            };
            println!("draw {} keyword {:?} {}", d.id, d.keyword, if d.open { "open" } else { "closed" });
            println!("entrants ({}): {}", people.len(), people.join(", "));
            if let Some(seed) = d.seed {
                println!("seed: {seed}");
                println!("generator: {}", d.generator.as_deref().unwrap_or("unrecorded"));
                println!("winners: {}", d.winners.join(", "));
                let check = match d.generator.as_deref() {
                    Some(GENERATOR) if pick_winners(&people, d.winners.len(), seed) == d.winners => "same winners",
                    Some(GENERATOR) => "DIFFERENT winners",
                    _ => "not possible with this generator",
                };
                println!("re-check: {check}");
            }
        }
    }
    Ok(())
}

/// Publishes the closed draw: group, draw id, entrants counted, winners, seed and generator,
/// with an id of the group and draw, so a second close of the same draw (after a failure to
/// publish, say) carries the same id for subscribers to drop.
async fn publish_closed(ctx: &Ctx, bus: &str, group: &str, d: &Draw) -> Res<()> {
    let fields = serde_json::json!({
        "group": group,
        "draw": d.id,
        "keyword": d.keyword,
        "entrants": d.entrants.len(),
        "winners": d.winners,
        "seed": d.seed,
        "generator": d.generator,
    });
    let event =
        BusEvent::product(DRAW_CLOSED, stable_id(&[DRAW_CLOSED, group, &d.id]), shared::store::now_ms(), fields);
    let publisher = EventBridge::new(aws_sdk_eventbridge::Client::new(ctx.aws().await), bus);
    let failed = Bus::new(Arc::new(publisher)).publish_all(vec![((), event)]).await;
    match failed.is_empty() {
        true => Ok(()),
        false => Err(Fail::Op(format!(
            "the draw is closed and saved, but publishing it to {bus} failed (see the log); the result stands"
        ))),
    }
}

/// A seed for a draw when none is given: the clock's nanoseconds, recorded with the result.
fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(7)
}
