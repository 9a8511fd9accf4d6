use xchg_protocol::{Listing, Timestamp};

use super::*;
use crate::catalog::tables::listings;

fn listing(title: &str, description: &str, category: &str) -> Listing {
    let mut draft = xchg_protocol::vectors::credit_draft();
    draft.title = title.into();
    draft.description = description.into();
    draft.category = category.into();
    draft.keywords = Vec::new();
    draft.scenarios = vec!["贷款审查".into()];
    draft.provider.name = "禹州市大数据中心".into();
    Listing::first_version(
        draft,
        "xuchang/yuzhou".parse().expect("zone"),
        Timestamp(1_000),
    )
}

/// Writes `listings` to the catalog in `dir` as the state machine would (the index is not
/// running: a node that crashed after applying them and before indexing them).
fn apply(dir: &Path, listings: &[(Listing, ListingState)]) {
    let db = crate::catalog::test_db(dir);
    for (l, state) in listings {
        listings::write(&db, l, *state, "p1").expect("write");
    }
}

async fn opened(dir: &Path) -> (Db, SearchIndex) {
    let db = Db::open(dir).await.expect("db");
    let clock = {
        let mut conn = db.reader().await.expect("reader");
        listings::clock(&mut conn).await.expect("clock")
    };
    let index = SearchIndex::open(dir, clock).expect("index");
    (db, index)
}

async fn caught_up(dir: &Path) -> (Db, SearchIndex) {
    let (db, index) = opened(dir).await;
    index.catch_up(&db, &mut |_| {}).await.expect("catch up");
    (db, index)
}

async fn titles(index: &SearchIndex, db: &Db, s: Search) -> (Vec<String>, Page) {
    let clock = {
        let mut conn = db.reader().await.expect("reader");
        listings::clock(&mut conn).await.expect("clock")
    };
    let page = search(index, db, s, "xuchang/yuzhou".parse().expect("zone"), clock)
        .await
        .expect("search");
    let titles = page.items.iter().map(|v| v.listing.title.clone()).collect();
    (titles, page)
}

fn q(text: &str) -> Search {
    Search {
        q: Some(text.into()),
        sort: Sort::Relevance,
        ..Search::default()
    }
}

async fn close(db: Db, index: SearchIndex) {
    index.close().await;
    db.close().await;
}

#[tokio::test]
async fn a_word_finds_longer_words_holding_it_and_the_title_ranks_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[
            (
                listing("交通流量数据", "含企业信用评价的交通数据", "traffic"),
                ListingState::Listed,
            ),
            (
                listing("企业信用评价接口", "按统一社会信用代码查询", "credit"),
                ListingState::Listed,
            ),
            (
                listing("不动产登记数据", "不动产登记信息", "property"),
                ListingState::Submitted,
            ),
        ],
    );
    let (db, index) = caught_up(dir.path()).await;
    let (found, page) = titles(&index, &db, q("信用")).await;
    assert_eq!(found, ["企业信用评价接口", "交通流量数据"], "{page:?}");
    assert_eq!(page.total, 2);
    assert_eq!(page.sort, Sort::Relevance);
    assert_eq!(page.index_lag, 0);
    assert_eq!(page.facets.category.get("credit"), Some(&1));
    assert_eq!(page.facets.category.get("traffic"), Some(&1));
    assert_eq!(page.facets.category.get("property"), None);
    // A word that is nowhere finds nothing, quickly, with facets empty.
    let (found, page) = titles(&index, &db, q("航空")).await;
    assert!(found.is_empty());
    assert_eq!((page.total, page.facets.state.len()), (0, 0));
    // Facets count as if their own filter were not set.
    let (found, page) = titles(
        &index,
        &db,
        Search {
            state: Some("listed".into()),
            category: Some("credit".into()),
            ..Search::default()
        },
    )
    .await;
    assert_eq!(found, ["企业信用评价接口"]);
    assert_eq!(page.total, 1);
    assert_eq!(page.facets.category.get("traffic"), Some(&1), "{page:?}");
    assert_eq!(page.facets.state.get("submitted"), None, "{page:?}");
    assert_eq!(page.facets.state.get("listed"), Some(&1), "{page:?}");
    close(db, index).await;
}

#[tokio::test]
async fn pages_follow_each_other_without_repeats_while_listings_are_added() {
    for sort in [Sort::Relevance, Sort::Newest] {
        pages_while_listings_are_added(sort).await;
    }
}

/// Pages of 7 through 25 matches of differing relevance; after the first page a listing that
/// matches better than any arrives. Every listing there at the first page comes exactly once.
async fn pages_while_listings_are_added(sort: Sort) {
    let dir = tempfile::tempdir().expect("tempdir");
    let first: Vec<(Listing, ListingState)> = (0..25)
        .map(|i| {
            let title = format!("信用数据产品{i}");
            (
                listing(&title, &"信用 ".repeat(1 + i % 5), "credit"),
                ListingState::Listed,
            )
        })
        .collect();
    apply(dir.path(), &first);
    let (mut db, mut index) = caught_up(dir.path()).await;
    let mut seen = Vec::new();
    let mut s = Search {
        limit: Some(7),
        sort,
        ..q("信用")
    };
    loop {
        let (found, page) = titles(&index, &db, s.clone()).await;
        assert_eq!(page.total, if seen.is_empty() { 25 } else { 26 });
        assert_eq!(page.sort, sort);
        seen.extend(found);
        let Some(next) = page.next_cursor else { break };
        s.cursor = Some(next);
        if seen.len() == 7 {
            close(db, index).await;
            apply(
                dir.path(),
                &[(
                    listing("信用信用信用", "信用", "credit"),
                    ListingState::Listed,
                )],
            );
            (db, index) = caught_up(dir.path()).await;
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seen.len(),
        "a listing came twice ({sort:?}): {seen:?}"
    );
    for i in 0..25 {
        let title = format!("信用数据产品{i}");
        assert!(
            seen.contains(&title),
            "{title} missing ({sort:?}): {seen:?}"
        );
    }
    close(db, index).await;
}

/// The index is derived from the applied catalog, committed apart from it: a node that applied
/// listings and stopped before indexing them (killed, or the index's commit failed) takes them
/// in when it starts again, and a changed state is seen as well as a new listing.
#[tokio::test]
async fn the_index_catches_up_after_a_crash_between_apply_and_indexing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kept = listing("禹州市企业信用核验", "核验", "credit");
    apply(dir.path(), &[(kept.clone(), ListingState::Submitted)]);
    let (db, index) = caught_up(dir.path()).await;
    let before = index.covered();
    close(db, index).await;
    // Applied while the index was not running.
    apply(
        dir.path(),
        &[
            (
                listing("长葛市公积金缴存数据", "公积金", "housing"),
                ListingState::Listed,
            ),
            (kept.clone(), ListingState::Listed),
        ],
    );
    let (db, index) = opened(dir.path()).await;
    assert_eq!(index.covered(), before, "the index kept its own position");
    let (_, page) = titles(&index, &db, q("公积金")).await;
    assert_eq!((page.total, page.index_lag), (0, 2), "not yet taken in");
    // The node's indexer, as it runs.
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(index.clone().run(db.clone(), stop_rx));
    let clock = {
        let mut conn = db.reader().await.expect("reader");
        listings::clock(&mut conn).await.expect("clock")
    };
    index
        .wait_covers(clock, Duration::from_secs(30))
        .await
        .expect("caught up");
    let (found, _) = titles(&index, &db, q("公积金")).await;
    assert_eq!(found, ["长葛市公积金缴存数据"]);
    let (_, page) = titles(
        &index,
        &db,
        Search {
            state: Some("listed".into()),
            ..Search::default()
        },
    )
    .await;
    assert_eq!(page.total, 2, "the state change was taken in: {page:?}");
    stop.send_replace(true);
    task.await.expect("indexer stops");
    db.close().await;
}

/// A snapshot replaces every row and draws a new epoch: the index starts over, so a listing
/// the snapshot does not hold is no longer found.
#[tokio::test]
async fn a_new_epoch_starts_the_index_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[
            (
                listing("鄢陵县花木数据", "花木", "agri"),
                ListingState::Listed,
            ),
            (
                listing("襄城县煤炭数据", "煤炭", "energy"),
                ListingState::Listed,
            ),
        ],
    );
    let (db, index) = caught_up(dir.path()).await;
    close(db, index).await;
    {
        let db = crate::catalog::test_db(dir.path());
        db.execute_batch(
            "DELETE FROM listing_history; DELETE FROM listings WHERE category = 'agri'",
        )
        .expect("delete");
        listings::new_clock_epoch(&db).expect("epoch");
    }
    let (db, index) = caught_up(dir.path()).await;
    let (found, page) = titles(&index, &db, Search::default()).await;
    assert_eq!(found, ["襄城县煤炭数据"], "{page:?}");
    close(db, index).await;
}

#[tokio::test]
async fn a_cursor_not_written_by_the_index_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(dir.path(), &[]);
    let (db, index) = caught_up(dir.path()).await;
    for (cursor, sort) in [
        ("r.!!", Sort::Relevance),
        ("r.e30", Sort::Newest),
        ("abc", Sort::Newest),
        ("12", Sort::Relevance),
    ] {
        let s = Search {
            cursor: Some(cursor.into()),
            sort,
            ..q("信用")
        };
        let err = index
            .find(&s, &"xuchang/yuzhou".parse().expect("zone"))
            .expect_err(cursor);
        assert!(matches!(err, SearchError::Cursor(_)), "{err}");
    }
    close(db, index).await;
}

/// Found by review: a changed listing is deleted and added again, and a deleted document still
/// counts in a word's document frequency until segments merge; scoring with the count of live
/// documents alone broke BM25's n >= df and panicked every search for the word.
#[tokio::test]
async fn a_word_of_changed_listings_is_still_searchable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = listing("交通数据", "数据", "traffic");
    let b = listing("医疗数据", "数据", "health");
    let c = listing("能源数据", "数据", "energy");
    apply(
        dir.path(),
        &[
            (a.clone(), ListingState::Submitted),
            (b, ListingState::Submitted),
            (c, ListingState::Submitted),
        ],
    );
    let (db, index) = caught_up(dir.path()).await;
    close(db, index).await;
    // One of the three changes: its first document is deleted, not yet merged away.
    apply(dir.path(), &[(a, ListingState::Listed)]);
    let (db, index) = caught_up(dir.path()).await;
    let (found, page) = titles(&index, &db, q("数据")).await;
    assert_eq!(found.len(), 3, "{page:?}");
    assert_eq!(page.facets.state.get("listed"), Some(&1));
    close(db, index).await;
}

/// A relevance cursor carrying a word's document frequency above its count of documents is
/// not one the index wrote (it would break BM25's n >= df).
#[tokio::test]
async fn a_cursor_with_impossible_statistics_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[(listing("交通数据", "数据", "traffic"), ListingState::Listed)],
    );
    let (db, index) = caught_up(dir.path()).await;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"s":0,"q":0,"n":1,"t":1,"d":[["数据",5]]}"#);
    let s = Search {
        cursor: Some(format!("r.{forged}")),
        ..q("数据")
    };
    let err = index
        .find(&s, &"xuchang/yuzhou".parse().expect("zone"))
        .expect_err("forged");
    assert!(matches!(err, SearchError::Cursor(_)), "{err}");
    close(db, index).await;
}

/// Found by CI (tests/zone_catch_up): a node told to stop while its index was rebuilding did
/// not stop within 20 s. A step gives up at the next row once told to stop, commits nothing,
/// and what it did not commit is taken in at the next start.
#[tokio::test]
async fn a_step_told_to_stop_commits_nothing_and_the_next_start_takes_everything_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[
            (listing("交通数据", "数据", "traffic"), ListingState::Listed),
            (listing("医疗数据", "数据", "health"), ListingState::Listed),
        ],
    );
    let (db, index) = opened(dir.path()).await;
    let before = index.covered();
    let (clock, rows) = {
        let mut conn = db.reader().await.expect("reader");
        let clock = listings::clock(&mut conn).await.expect("clock");
        let rows = listings::changed_since(&mut conn, 0, STEP)
            .await
            .expect("rows");
        (clock, rows)
    };
    assert_eq!(rows.len(), 2);
    let (_tell, stop) = watch::channel(true);
    let err = index
        .take_in(clock, None, &rows, Some(&stop))
        .expect_err("stopped");
    assert!(matches!(err, SearchError::Stopped), "{err}");
    assert_eq!(index.covered(), before);
    close(db, index).await;
    let (db, index) = caught_up(dir.path()).await;
    let (found, _) = titles(&index, &db, q("数据")).await;
    assert_eq!(found.len(), 2);
    close(db, index).await;
}

/// Totals, facet counts and newest-first pages against a model of the catalog, with and
/// without words, before and after listings change while the index stays open (the counts
/// kept per segment must follow its deletes).
#[tokio::test]
async fn counts_and_pages_match_the_catalog_while_listings_change() {
    const CATEGORIES: [&str; 3] = ["traffic", "health", "energy"];
    let dir = tempfile::tempdir().expect("tempdir");
    let all: Vec<Listing> = (0..40usize)
        .map(|i| {
            let text = if i.is_multiple_of(2) {
                "企业信用评价"
            } else {
                "道路流量"
            };
            listing(&format!("数据{i}"), text, CATEGORIES[i % 3])
        })
        .collect();
    let mut states: Vec<ListingState> = (0..40)
        .map(|i| {
            if i % 4 == 0 {
                ListingState::Submitted
            } else {
                ListingState::Listed
            }
        })
        .collect();
    let rows: Vec<_> = all.iter().cloned().zip(states.iter().copied()).collect();
    apply(dir.path(), &rows);
    let (db, index) = caught_up(dir.path()).await;
    for round in 0..2 {
        for words in [None, Some("信用")] {
            let search = |cursor: Option<String>| Search {
                q: words.map(str::to_owned),
                sort: Sort::Newest,
                state: Some("listed".into()),
                category: Some("traffic".into()),
                limit: Some(3),
                cursor,
                ..Search::default()
            };
            let has_words = |i: usize| words.is_none() || i.is_multiple_of(2);
            let listed = |i: usize| states[i] == ListingState::Listed;
            let traffic = |i: usize| i.is_multiple_of(3);
            let expected: Vec<String> = (0..40)
                .rev()
                .filter(|i| has_words(*i) && listed(*i) && traffic(*i))
                .map(|i| format!("数据{i}"))
                .collect();
            let mut seen = Vec::new();
            let mut cursor = None;
            loop {
                let (page_titles, page) = titles(&index, &db, search(cursor)).await;
                assert_eq!(page.total, expected.len() as u64, "round {round} {words:?}");
                let by_state = (0..40)
                    .filter(|i| {
                        has_words(*i) && traffic(*i) && states[*i] == ListingState::Submitted
                    })
                    .count() as u64;
                assert_eq!(
                    page.facets.state.get("submitted").copied().unwrap_or(0),
                    by_state,
                    "round {round} {words:?}"
                );
                for (n, category) in CATEGORIES.iter().enumerate() {
                    let n = (0..40)
                        .filter(|i| has_words(*i) && listed(*i) && i % 3 == n)
                        .count() as u64;
                    assert_eq!(
                        page.facets.category.get(*category).copied().unwrap_or(0),
                        n,
                        "round {round} {words:?} {category}"
                    );
                }
                seen.extend(page_titles);
                match page.next_cursor {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "round {round} {words:?}");
        }
        // Some listed listings are delisted and some submitted ones listed, the index open.
        let mut changed = Vec::new();
        for (i, state) in states.iter_mut().enumerate() {
            let next = match (*state, i % 5) {
                (ListingState::Listed, 0 | 3) => ListingState::Delisted,
                (ListingState::Submitted, _) => ListingState::Listed,
                _ => continue,
            };
            *state = next;
            changed.push((all[i].clone(), next));
        }
        apply(dir.path(), &changed);
        index.catch_up(&db, &mut |_| {}).await.expect("catch up");
    }
    close(db, index).await;
}

/// Relevance order breaks ties by recency: of the listings sharing a score the most recent
/// comes first, whatever segment holds it and however often it changed, while whole blocks
/// that only tie the least kept score are skipped ([`collect::best`]).
#[tokio::test]
async fn equal_scores_come_newest_first_across_segments_and_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every third listing holds the word in its title too (scores higher); the others all
    // score alike.
    let all: Vec<Listing> = (0..300usize)
        .map(|i| {
            let title = if i.is_multiple_of(3) {
                format!("信用数据{i}")
            } else {
                format!("交通数据{i}")
            };
            listing(&title, "企业信用评价", "credit")
        })
        .collect();
    let expected: Vec<String> = (0..300)
        .rev()
        .filter(|i| i % 3 == 0)
        .chain((0..300).rev().filter(|i| i % 3 != 0))
        .map(|i| all[i].title.clone())
        .collect();
    let (mut db, mut index) = caught_up(dir.path()).await;
    for batch in all.chunks(100) {
        // One commit, one segment, per batch.
        let rows: Vec<_> = batch
            .iter()
            .map(|l| (l.clone(), ListingState::Listed))
            .collect();
        close(db, index).await;
        apply(dir.path(), &rows);
        (db, index) = caught_up(dir.path()).await;
    }
    for round in 0..2 {
        for limit in [1u32, 7, 70] {
            let mut seen = Vec::new();
            let mut s = Search {
                limit: Some(limit),
                ..q("信用")
            };
            loop {
                let (found, page) = titles(&index, &db, s.clone()).await;
                seen.extend(found);
                match page.next_cursor {
                    Some(next) => s.cursor = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "round {round}, pages of {limit}");
        }
        // Some old listings change (each is written again, into a new segment, keeping its
        // place in time); one is delisted and leaves the listed ones.
        let changed: Vec<_> = [2usize, 3, 5, 30]
            .iter()
            .map(|i| (all[*i].clone(), ListingState::Listed))
            .chain([(all[4].clone(), ListingState::Delisted)])
            .collect();
        apply(dir.path(), &changed);
        index.catch_up(&db, &mut |_| {}).await.expect("catch up");
        let listed: Vec<String> = expected
            .iter()
            .filter(|t| **t != all[4].title)
            .cloned()
            .collect();
        let (found, _) = titles(
            &index,
            &db,
            Search {
                state: Some("listed".into()),
                limit: Some(100),
                ..q("信用")
            },
        )
        .await;
        assert_eq!(found, listed[..100], "listed, round {round}");
    }
    close(db, index).await;
}

/// A listing holding the query's words together and in order comes before one holding them
/// apart, though the other is newer and scores alike word by word.
#[tokio::test]
async fn the_words_in_order_rank_above_the_words_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[
            (
                listing("数据A", "road traffic flow counts", "traffic"),
                ListingState::Listed,
            ),
            (
                listing("数据B", "flow counts traffic road", "traffic"),
                ListingState::Listed,
            ),
        ],
    );
    let (db, index) = caught_up(dir.path()).await;
    let (found, _) = titles(&index, &db, q("traffic flow")).await;
    assert_eq!(found, ["数据A", "数据B"]);
    let (found, _) = titles(&index, &db, q("traffic")).await;
    assert_eq!(found, ["数据B", "数据A"], "alike, the newer first");
    // A word twice is one requirement; the phrase of it twice is found nowhere.
    let (found, page) = titles(&index, &db, q("traffic traffic")).await;
    assert_eq!((found.len(), page.total), (2, 2));
    close(db, index).await;
}

/// Found running `xchg index rebuild`: its last progress line said "1000000 of 1000000 changes
/// (1000000000/s)", the catch-up's time forgotten the moment it was over.
#[test]
fn a_finished_catch_up_reports_the_time_it_took() {
    let mut report = Reporter::default();
    report.start(30_000);
    report.add(10_000);
    std::thread::sleep(Duration::from_millis(5));
    report.add(20_000);
    let p = report.progress();
    assert_eq!((p.done, p.behind), (30_000, 30_000));
    assert!(p.elapsed >= Duration::from_millis(5), "{p:?}");
}

/// Found by review: a catch-up counted rows against the changes it was behind by, and a
/// listing changed twice is one row, so it never ended (later catch-ups were not reported, the
/// first one's figures were logged forever).
#[tokio::test]
async fn a_catch_up_ends_when_the_index_holds_the_catalog_though_rows_were_fewer_than_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = listing("交通数据", "数据", "traffic");
    let b = listing("信用数据", "数据", "credit");
    apply(
        dir.path(),
        &[
            (a.clone(), ListingState::Submitted),
            (b, ListingState::Listed),
        ],
    );
    apply(dir.path(), &[(a.clone(), ListingState::Listed)]);
    apply(dir.path(), &[(a, ListingState::Delisted)]);
    let (db, index) = opened(dir.path()).await;
    let mut report = Reporter::default();
    let mut rows = 0;
    while let Some(n) = index.step(&db, &mut report, None).await.expect("step") {
        rows += n;
    }
    assert_eq!((rows, report.behind), (2, 4));
    assert!(report.started.is_none(), "the catch-up never ended");
    close(db, index).await;
}

/// A body that does not unpack (a damaged file) is left out of search; the listings after it
/// are still taken in, and the index reaches the catalog's clock (it used to fail the whole
/// step, again at every retry, once bodies were packed).
#[tokio::test]
async fn a_body_that_does_not_unpack_is_left_out_and_the_rest_is_indexed() {
    let dir = tempfile::tempdir().expect("tempdir");
    apply(
        dir.path(),
        &[
            (
                listing("禹州市企业信用核验", "核验", "credit"),
                ListingState::Listed,
            ),
            (
                listing("长葛市公积金缴存数据", "公积金", "housing"),
                ListingState::Listed,
            ),
        ],
    );
    {
        let db = crate::catalog::test_db(dir.path());
        // A packed body whose frame is cut short: the first listing's.
        db.execute_batch(
            "UPDATE listings SET body = substr(body, 1, length(body) / 2)
             WHERE seq = (SELECT min(seq) FROM listings)",
        )
        .expect("damage");
        let first: String = db
            .query_row(
                "SELECT hex(substr(body, 1, 1)) FROM listings ORDER BY seq LIMIT 1",
                [],
                |r| r.get(0),
            )
            .expect("first byte");
        assert_eq!(first, "01", "the damaged body is a packed one");
    }
    let (db, index) = caught_up(dir.path()).await;
    let clock = {
        let mut conn = db.reader().await.expect("reader");
        listings::clock(&mut conn).await.expect("clock")
    };
    assert!(
        index.covered().covers(clock),
        "the index reached the catalog"
    );
    let (found, _) = titles(&index, &db, q("公积金")).await;
    assert_eq!(found, ["长葛市公积金缴存数据"]);
    let (found, _) = titles(&index, &db, q("信用")).await;
    assert!(
        found.is_empty(),
        "the damaged listing is left out: {found:?}"
    );
    close(db, index).await;
}
