//! `xchg bench search`: loads a synthetic catalog (a skewed vocabulary of data-product words,
//! several categories and zones, titles and descriptions of real length) into a node's catalog
//! file while the node's own indexer follows it, then asks every class of search query many
//! times through the search path the API uses (index, then the page's rows from the catalog)
//! and prints p50/p99/max per class, the load and index rates, the index's lag during loading
//! and the bytes per listing on disk. And `xchg index rebuild`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::watch;
use xchg_protocol::{
    Classification, DeliveryMode, Listing, ListingDraft, Timestamp, ZoneId, vectors,
};

use super::args::{BenchSearchArgs, IndexRebuildArgs};
use xchg_node::catalog::ListingState;
use xchg_node::catalog::query::{Search, Sort};
use xchg_node::catalog::tables::listings::{self, By, NewRow};
use xchg_node::search::{self, SearchIndex};
use xchg_node::store::Db;

/// The words of the synthetic catalog, most frequent first (drawn with Zipf weights 1/rank).
const VOCABULARY: &[&str] = &[
    "数据",
    "企业",
    "信息",
    "服务",
    "查询",
    "统计",
    "信用",
    "接口",
    "平台",
    "管理",
    "公共数据",
    "交通",
    "医疗",
    "金融",
    "登记",
    "城市",
    "监测",
    "分析",
    "交易",
    "产品",
    "数据产品",
    "农业",
    "能源",
    "电力",
    "水务",
    "教育",
    "人口",
    "社保",
    "就业",
    "税务",
    "市场主体",
    "不动产",
    "公积金",
    "环境",
    "气象",
    "物流",
    "旅游",
    "住房",
    "车辆",
    "道路",
    "客流",
    "车流",
    "医保",
    "药品",
    "门诊",
    "住院",
    "学籍",
    "招聘",
    "工商",
    "注册",
    "变更",
    "年报",
    "纳税",
    "发票",
    "用电",
    "用水",
    "燃气",
    "排放",
    "碳排放",
    "空气",
    "质量",
    "噪声",
    "河道",
    "水位",
    "降水",
    "温度",
    "风速",
    "预警",
    "应急",
    "消防",
    "安全",
    "隐私计算",
    "数据沙箱",
    "模型输出",
    "核验",
    "评价",
    "评分",
    "画像",
    "风险",
    "授信",
    "贷款",
    "普惠金融",
    "保险",
    "理赔",
    "征信",
    "担保",
    "融资",
    "补贴",
    "惠农",
    "种植",
    "养殖",
    "花木",
    "烟草",
    "陶瓷",
    "钧瓷",
    "发制品",
    "假发",
    "再生",
    "金属",
    "机械",
    "装备",
    "制造",
    "园区",
    "招商",
    "投资",
    "项目",
    "审批",
    "许可",
    "备案",
    "执法",
    "处罚",
    "信访",
    "热线",
    "政务",
    "办件",
    "时效",
    "满意度",
    "网格",
    "社区",
    "街道",
    "乡镇",
    "村庄",
    "户籍",
    "婚姻",
    "生育",
    "养老",
    "救助",
    "残疾",
    "退役",
    "军人",
    "志愿",
    "文化",
    "体育",
    "场馆",
    "图书",
    "档案",
    "地名",
    "地址",
    "测绘",
    "遥感",
    "影像",
    "土地",
    "规划",
    "建设",
    "工程",
    "造价",
    "招标",
    "投标",
    "采购",
    "合同",
    "履约",
    "仓储",
    "冷链",
    "快递",
    "邮政",
    "铁路",
    "公交",
    "出租",
    "停车",
    "充电",
    "加油",
    "高速",
    "收费",
    "路况",
    "事故",
    "违法",
    "驾驶",
    "船舶",
    "航道",
    "港口",
    "口岸",
    "通关",
    "跨境",
    "外贸",
    "出口",
    "进口",
    "汇率",
    "价格",
    "指数",
    "景气",
    "舆情",
    "口碑",
    "电商",
    "零售",
    "餐饮",
    "住宿",
    "客房",
    "票务",
    "演出",
    "直播",
    "短视频",
    "游戏",
    "版权",
    "专利",
    "商标",
    "标准",
    "认证",
    "检测",
    "计量",
    "特种设备",
    "食品",
    "农产品",
    "追溯",
    "溯源",
    "防伪",
    "区块链",
    "存证",
    "电子签章",
    "身份",
    "认证码",
    "人脸",
    "声纹",
    "指纹",
    "网约车",
    "骑手",
];

/// Categories with Zipf weights, most common first.
const CATEGORIES: &[&str] = &[
    "credit",
    "traffic",
    "health",
    "government",
    "finance",
    "energy",
    "environment",
    "agriculture",
    "housing",
    "education",
    "commerce",
    "culture",
];

/// Zones the listings come from: the first is the bench node's own.
const ZONES: &[&str] = &[
    "xuchang/yuzhou",
    "xuchang/changge",
    "xuchang/municipal",
    "xuchang/yanling",
    "xuchang/xiangcheng",
    "zhengzhou/jinshui",
];

const COUNTIES: &[&str] = &[
    "禹州市",
    "长葛市",
    "许昌市",
    "鄢陵县",
    "襄城县",
    "建安区",
    "魏都区",
];
const SUFFIXES: &[&str] = &[
    "数据集",
    "查询接口",
    "核验服务",
    "统计报表",
    "分析模型",
    "数据产品",
];
/// Words no listing holds (their characters appear in no vocabulary word).
const ABSENT: &[&str] = &[
    "鲸鱼", "冰川", "火山", "沙漠", "珊瑚", "极光", "恐龙", "潜艇",
];

/// Draws ranks with weights 1/(rank+1).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Self {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut StdRng) -> usize {
        let last = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.r#gen::<f64>() * last;
        self.cumulative.partition_point(|c| *c < x)
    }
}

struct Generator {
    rng: StdRng,
    words: Zipf,
    categories: Zipf,
}

impl Generator {
    fn word(&mut self) -> &'static str {
        VOCABULARY[self.words.draw(&mut self.rng).min(VOCABULARY.len() - 1)]
    }

    fn listing(&mut self, i: u64) -> (Listing, ListingState) {
        let mut draft: ListingDraft = vectors::credit_draft();
        let county = COUNTIES[self.rng.gen_range(0..COUNTIES.len())];
        let suffix = SUFFIXES[self.rng.gen_range(0..SUFFIXES.len())];
        let (a, b) = (self.word(), self.word());
        draft.title = format!("{county}{a}{b}{suffix}");
        let n = self.rng.gen_range(12..26);
        let mut description = String::new();
        for k in 0..n {
            description.push_str(self.word());
            if k % 7 == 6 {
                description.push('，');
            }
        }
        description.push('。');
        draft.description = description;
        draft.keywords = (0..3).map(|_| self.word().to_owned()).collect();
        draft.scenarios = vec![format!("{}{}", self.word(), "场景")];
        draft.category = CATEGORIES[self.categories.draw(&mut self.rng)].into();
        draft.classification = match self.rng.gen_range(0..10) {
            0..=2 => Classification::Public,
            3..=8 => Classification::General,
            _ => Classification::Important,
        };
        let modes = [
            DeliveryMode::Api,
            DeliveryMode::File,
            DeliveryMode::Sandbox,
            DeliveryMode::Verification,
        ];
        draft.delivery_modes = modes
            .iter()
            .copied()
            .filter(|_| self.rng.gen_bool(0.4))
            .collect();
        if draft.delivery_modes.is_empty() {
            draft.delivery_modes.push(DeliveryMode::Api);
        }
        let local = self.rng.gen_bool(0.7);
        let zone = if local {
            ZONES[0]
        } else {
            ZONES[self.rng.gen_range(1..ZONES.len())]
        };
        let state = match (local, self.rng.gen_range(0..20)) {
            (false, 0) => ListingState::Delisted,
            (false, _) => ListingState::Recognised,
            (true, 0..=2) => ListingState::Submitted,
            (true, 3) => ListingState::Delisted,
            (true, _) => ListingState::Listed,
        };
        let zone: ZoneId = zone
            .parse()
            .unwrap_or_else(|_| unreachable!("a valid zone literal"));
        (
            Listing::first_version(draft, zone, Timestamp(1_700_000_000_000 + i)),
            state,
        )
    }
}

fn generator(seed: u64) -> Generator {
    Generator {
        rng: StdRng::seed_from_u64(seed),
        words: Zipf::new(VOCABULARY.len()),
        categories: Zipf::new(CATEGORIES.len()),
    }
}

/// Rows per load transaction.
const LOAD_BATCH: u64 = 2_000;

/// Writes listings `from..to` of the synthetic catalog into `dir`'s catalog file, as the
/// state machine writes a submission (row and first history entry).
fn load(dir: &Path, generator_: &mut Generator, from: u64, to: u64) -> anyhow::Result<()> {
    let db = rusqlite::Connection::open(dir.join("catalog.db"))?;
    db.busy_timeout(Duration::from_secs(30))?;
    db.execute_batch("PRAGMA synchronous = NORMAL")?;
    let mut i = from;
    while i < to {
        let end = (i + LOAD_BATCH).min(to);
        let tx = db.unchecked_transaction()?;
        for n in i..end {
            let (listing, state) = generator_.listing(n);
            let row = NewRow::new(&listing, state, "bench-provider");
            if let Some(seq) = row.insert(&tx)? {
                let by = By {
                    id: "bench-provider",
                    role: "provider",
                };
                listings::record_submission(&tx, seq, n + 1, listing.created_at, by)?;
            }
        }
        tx.commit()?;
        i = end;
    }
    Ok(())
}

async fn clock(db: &Db) -> anyhow::Result<listings::Clock> {
    let mut conn = db.reader().await?;
    Ok(listings::clock(&mut conn).await?)
}

async fn held(db: &Db) -> anyhow::Result<u64> {
    let mut conn = db.reader().await?;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM listings")
        .fetch_one(&mut *conn)
        .await?;
    Ok(n.unsigned_abs())
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// `xchg bench search`.
///
/// # Errors
/// The data directory cannot be written, the catalog or the index fails.
pub async fn search(args: BenchSearchArgs) -> anyhow::Result<ExitCode> {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = Db::open(&dir).await?;
    let index = SearchIndex::open(&dir, clock(&db).await?)?;
    let (stop, stop_rx) = watch::channel(false);
    let indexer = tokio::spawn(index.clone().run(db.clone(), stop_rx));

    let already = held(&db).await?;
    let mut generator_ = generator(args.seed);
    let mut max_lag = 0u64;
    if already < args.listings {
        eprintln!(
            "loading {} listings into {} (the node's indexer follows)",
            args.listings - already,
            dir.display()
        );
        let started = Instant::now();
        let mut at = already;
        // Skip the listings already there, so the catalog is the seed's whichever run made it.
        for n in 0..already {
            let _ = generator_.listing(n);
        }
        let mut last_report = Instant::now();
        while at < args.listings {
            let to = (at + 20_000).min(args.listings);
            let dir2 = dir.clone();
            let mut g = generator_;
            generator_ =
                tokio::task::spawn_blocking(move || load(&dir2, &mut g, at, to).map(|()| g))
                    .await??;
            at = to;
            let lag = index.covered().lag(clock(&db).await?);
            max_lag = max_lag.max(lag);
            if last_report.elapsed() >= Duration::from_secs(5) || at == args.listings {
                let rate = (at - already) as f64 / started.elapsed().as_secs_f64();
                eprintln!("  loaded {at} ({rate:.0}/s), index lag {lag} changes");
                last_report = Instant::now();
            }
        }
        let loaded = started.elapsed();
        let target = clock(&db).await?;
        let mut last = Instant::now();
        while !index.covered().covers(target) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if last.elapsed() >= Duration::from_secs(5) {
                eprintln!("  index lag {} changes", index.covered().lag(target));
                last = Instant::now();
            }
        }
        let indexed = started.elapsed();
        let n = (args.listings - already) as f64;
        out!(
            "loaded {} listings in {:.1} s ({:.0}/s); indexed by {:.1} s ({:.0}/s overall); \
             index lag during loading at most {max_lag} changes\n",
            args.listings - already,
            loaded.as_secs_f64(),
            n / loaded.as_secs_f64(),
            indexed.as_secs_f64(),
            n / indexed.as_secs_f64()
        );
    } else {
        let target = clock(&db).await?;
        index
            .wait_covers(target, Duration::from_secs(3_600))
            .await
            .context("the index catching up")?;
    }
    let total = held(&db).await?;

    // Bytes per listing: the catalog file after a checkpoint, and the index.
    {
        let conn = rusqlite::Connection::open(dir.join("catalog.db"))?;
        conn.busy_timeout(Duration::from_secs(30))?;
        let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
    }
    let catalog = file_bytes(&dir.join("catalog.db")) + file_bytes(&dir.join("catalog.db-wal"));
    let search_bytes = index.bytes();
    let per = |b: u64| b as f64 / total.max(1) as f64;
    let sample: Vec<usize> = {
        let mut g = generator(args.seed ^ 0x5eed);
        (0..1000)
            .map(|i| g.listing(i).0.canonical_bytes().len())
            .collect()
    };
    let listing_bytes = sample.iter().sum::<usize>() as f64 / sample.len() as f64;
    out!(
        "{total} listings: catalog {:.0} B/listing, search index {:.0} B/listing, together \
         {:.0} B/listing (a listing's canonical bytes: {listing_bytes:.0} B on average)\n",
        per(catalog),
        per(search_bytes),
        per(catalog + search_bytes)
    );

    let own: ZoneId = ZONES[0]
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid zone literal"));
    let q = |text: &str| Search {
        q: Some(text.to_owned()),
        sort: Sort::Relevance,
        ..Search::default()
    };
    let rank = |r: usize| VOCABULARY.iter().filter(|w| w.chars().count() == 2).nth(r);
    let two = |range: std::ops::Range<usize>| -> Vec<&'static str> {
        range.filter_map(rank).copied().collect()
    };
    let common = two(0..6);
    let mid = two(40..60);
    let rare = two(150..170);
    let long: Vec<&str> = VOCABULARY
        .iter()
        .filter(|w| w.chars().count() >= 4)
        .copied()
        .collect();
    let mut classes: Vec<(&str, Vec<Search>)> = vec![
        ("no query, first page", vec![Search::default()]),
        (
            "common two-character word",
            common.iter().map(|w| q(w)).collect(),
        ),
        (
            "mid-frequency two-character word",
            mid.iter().map(|w| q(w)).collect(),
        ),
        (
            "four- or five-character term",
            long.iter().map(|w| q(w)).collect(),
        ),
        (
            "two words",
            common
                .iter()
                .zip(mid.iter().cycle())
                .map(|(a, b)| q(&format!("{a} {b}")))
                .collect(),
        ),
        (
            "absent two-character word",
            ABSENT.iter().map(|w| q(w)).collect(),
        ),
        (
            "rare word + category facet",
            rare.iter()
                .zip(CATEGORIES.iter().cycle())
                .map(|(w, c)| Search {
                    category: Some((*c).into()),
                    ..q(w)
                })
                .collect(),
        ),
        (
            "common word + all five facets",
            common
                .iter()
                .zip(CATEGORIES.iter().cycle())
                .map(|(w, c)| Search {
                    state: Some("listed".into()),
                    category: Some((*c).into()),
                    classification: Some("general".into()),
                    delivery_mode: Some("api".into()),
                    origin: Some("local".into()),
                    ..q(w)
                })
                .collect(),
        ),
        (
            "no query + state and category",
            CATEGORIES
                .iter()
                .map(|c| Search {
                    state: Some("listed".into()),
                    category: Some((*c).into()),
                    ..Search::default()
                })
                .collect(),
        ),
        (
            "common word, newest first",
            common
                .iter()
                .map(|w| Search {
                    sort: Sort::Newest,
                    ..q(w)
                })
                .collect(),
        ),
    ];
    // Deep pages: the 10th page of 20 of a common word, from the 9th page's cursor.
    let mut deep = Vec::new();
    for w in &common {
        let mut s = q(w);
        for _ in 0..9 {
            let page =
                search::search(&index, &db, s.clone(), own.clone(), clock(&db).await?).await?;
            s.cursor = page.next_cursor;
        }
        deep.push(s);
    }
    classes.push(("common word, 10th page", deep));

    out!(
        "{:<36} {:>9} {:>9} {:>9} {:>12}\n",
        "query class",
        "p50 ms",
        "p99 ms",
        "max ms",
        "matches"
    );
    for (name, searches) in &classes {
        if searches.is_empty() {
            bail!("no query for class {name}");
        }
        let mut times = Vec::with_capacity(args.queries);
        let mut matches = 0u64;
        for i in 0..args.queries {
            let s = searches[i % searches.len()].clone();
            let at = clock(&db).await?;
            let started = Instant::now();
            let page = search::search(&index, &db, s, own.clone(), at).await?;
            times.push(started.elapsed());
            matches += page.total;
        }
        times.sort_unstable();
        let pick = |p: f64| {
            let i = ((times.len() as f64 * p).ceil() as usize).clamp(1, times.len()) - 1;
            times[i].as_secs_f64() * 1e3
        };
        out!(
            "{name:<36} {:>9.2} {:>9.2} {:>9.2} {:>12}\n",
            pick(0.5),
            pick(0.99),
            pick(1.0),
            matches / args.queries as u64
        );
    }
    stop.send_replace(true);
    let _ = indexer.await;
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `xchg index rebuild`.
///
/// # Errors
/// The data directory is in use or unreadable; the catalog or the index fails.
pub async fn rebuild(args: IndexRebuildArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.data_dir;
    if !dir.join("catalog.db").exists() {
        bail!("{} holds no catalog (catalog.db)", dir.display());
    }
    // Opening the store takes the data directory's lock: a running node keeps it.
    let db = Db::open(dir)
        .await
        .with_context(|| format!("opening {} (is its node stopped?)", dir.display()))?;
    let index_dir = dir.join(search::INDEX_DIR);
    if index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)
            .with_context(|| format!("removing {}", index_dir.display()))?;
    }
    let index = SearchIndex::open(dir, clock(&db).await?)?;
    let total = held(&db).await?;
    eprintln!("rebuilding the search index of {total} listings");
    let started = Instant::now();
    let mut last = Instant::now();
    index
        .catch_up(&db, &mut |p| {
            if last.elapsed() >= Duration::from_secs(2) {
                eprintln!(
                    "  {} of {} changes ({:.0}/s)",
                    p.done,
                    p.behind,
                    p.done as f64 / p.elapsed.as_secs_f64().max(0.001)
                );
                last = Instant::now();
            }
        })
        .await?;
    index.close().await;
    db.close().await;
    out!(
        "rebuilt the search index of {total} listings in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
