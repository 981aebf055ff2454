// movierec's page: search a title, rate it, get a list with reasons, open "more like this".
//
// Talks only to this origin's /api routes (web/app.py), which call the model server with its
// key: the page never sees a key. Ratings live in this browser's localStorage only. Every text
// that comes from the server or from storage is inserted with textContent, never as HTML, so
// a title such as <img src=x onerror=alert(1)> is shown as the characters it is made of.
//
// Timings: each list update after a star click is recorded as the Performance API measure
// "rate-to-list", each set of suggestions after a keystroke as "keystroke-to-suggestions", and
// the first list shown as the mark "app-ready" (the browser tests read them).
"use strict";

const STORE = "movierec.ratings.v1"; // [{"movie_id", "stars", "title", "genres"}, ...]
const MIN_QUERY = 2; // as /api/search requires
const HEALTH_POLL_MS = 2000; // how often to look again while the model server is down

const state = {
  config: { genres: [], decades: [], rating: { min: 1, max: 5, step: 1 } },
  ratings: new Map(), // movie_id (string) -> {stars, title, genres}
  unknown: new Set(), // rated movie ids the served model does not know
  picked: null, // the movie chosen from the suggestions
  similarTo: null, // the movie whose "more like this" is open
  similarOpener: null, // the button that opened it, to return focus on close
  suggestions: [],
  active: -1, // index of the highlighted suggestion
  ready: false, // the first list has been shown
  watching: false, // polling /api/health
};
let listRun = { seq: 0, abort: null };
let searchRun = { seq: 0, abort: null };
let similarRun = { seq: 0, abort: null };
let groupCount = 0; // names radio groups uniquely
let configLoaded = Promise.resolve(); // settles once /api/config has answered (or failed)

const $ = (id) => document.getElementById(id);

// --------------------------------------------------------------------------- small helpers

/** An element with text content and attributes (never innerHTML). */
function el(tag, { text, cls, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

// The release year at the end of a MovieLens title, "Godfather, The (1972)"; a range such as
// "(2006-2007)" counts from its first year (the rule of model/titles.py).
const YEAR = /\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$/;

function yearOf(movie) {
  if (Number.isInteger(movie.year)) return movie.year;
  const match = YEAR.exec(movie.title || "");
  return match ? Number(match[1]) : null;
}

// Articles MovieLens moves to the end of a name ("Godfather, The", "Boot, Das", "Avventura,
// L'"), in the languages of its titles (the list of model/search.py).
const ARTICLE = new RegExp(
  "^(.*?), (The|A|An|Le|La|Les|L'|Un|Une|El|Los|Las|Una|Il|Lo|Gli|I|Uno|Der|Die|Das|Den|Ein|" +
    "Eine|O|Os|As|Um|Uma|De|Het|Een|Det|En|Ett)( \\(.*\\))?$",
);

/** The title without its year, the article moved back: "Godfather, The (1972)" -> "The
 *  Godfather", "Avventura, L' (1960)" -> "L'Avventura". The year is shown beside it. */
function displayTitle(title) {
  let name = (title || "").replace(YEAR, "").trim();
  const article = ARTICLE.exec(name);
  if (article) {
    const space = article[2].endsWith("'") ? "" : " ";
    name = `${article[2]}${space}${article[1]}${article[3] || ""}`;
  }
  return name || title || "";
}

function starsText(stars) {
  return `${stars % 1 ? stars.toFixed(1) : stars} star${stars === 1 ? "" : "s"}`;
}

/** Counts a list's updates in its data-updates attribute: tests wait for it to change. */
function countUpdate(node) {
  node.dataset.updates = String(Number(node.dataset.updates || 0) + 1);
}

function mark(name) {
  try {
    performance.mark(name);
  } catch (_) {
    /* a browser without User Timing: timings are only for the tests */
  }
}

function measure(name, start) {
  try {
    performance.measure(name, { start, end: performance.now() });
  } catch (_) {
    /* as above */
  }
}

// --------------------------------------------------------------------------- talking to /api

class ApiError extends Error {
  constructor(status, state, message) {
    super(message);
    this.status = status;
    this.state = state; // "down", "starting", "refused", "failed", "offline"
  }
}

async function api(path, body, signal) {
  let response;
  try {
    response = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "offline", "The page's server is not answering: start it with make serve");
  }
  let answer = null;
  try {
    answer = await response.json();
  } catch (_) {
    answer = null;
  }
  if (response.ok && answer) return answer;
  const error = (answer && answer.error) || {};
  const message = error.message || `HTTP ${response.status}`;
  throw new ApiError(response.status, error.state || "refused", message);
}

function isAbort(error) {
  return error && error.name === "AbortError";
}

function restart(run) {
  if (run.abort) run.abort.abort();
  run.abort = new AbortController();
  run.seq += 1;
  return run.seq;
}

// --------------------------------------------------------------------------- the status line

function showStatus(message, kind) {
  const box = $("status");
  box.replaceChildren();
  if (!message) {
    box.hidden = true;
    return;
  }
  box.className = `status ${kind || ""}`;
  // An error is announced at once; the rest politely.
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.append(el("span", { text: message }));
  box.hidden = false;
}

/** Say what went wrong, and while the model server is down or starting, watch for it. */
function report(error) {
  if (error.state === "down" || error.state === "starting" || error.state === "offline") {
    showStatus(error.message, error.state === "starting" ? "" : "error");
    watchHealth();
  } else if (error.state === "refused") {
    showStatus(`The model server refused the request: ${error.message}`, "error");
  } else {
    showStatus(error.message, "error");
  }
}

async function watchHealth() {
  if (state.watching) return;
  state.watching = true;
  while (state.watching) {
    await new Promise((resolve) => setTimeout(resolve, HEALTH_POLL_MS));
    try {
      const health = await api("/api/health");
      if (health.state === "ready") {
        state.watching = false;
        showStatus("");
        refreshList();
        if (state.similarTo) loadSimilar();
        return;
      }
      showStatus(health.message, health.state === "starting" ? "" : "error");
    } catch (error) {
      showStatus(error.message, "error");
    }
  }
}

// --------------------------------------------------------------------------- ratings

function loadRatings() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORE) || "[]");
    for (const entry of Array.isArray(stored) ? stored : []) {
      const id = String(entry && entry.movie_id);
      if (/^\d{1,15}$/.test(id) && typeof entry.stars === "number") {
        state.ratings.set(id, {
          stars: entry.stars,
          title: String(entry.title || `Movie ${id}`),
          genres: Array.isArray(entry.genres) ? entry.genres.map(String) : [],
        });
      }
    }
  } catch (_) {
    localStorage.removeItem(STORE); // unreadable: start afresh rather than fail every load
  }
}

/** Stored as a list, in the order rated: an object's integer-like keys would be reordered. */
function saveRatings() {
  const list = [...state.ratings].map(([id, entry]) => ({ movie_id: Number(id), ...entry }));
  localStorage.setItem(STORE, JSON.stringify(list));
}

function rate(movie, stars, startedAt) {
  state.ratings.set(String(movie.movie_id), {
    stars,
    title: movie.title,
    genres: movie.genres || [],
  });
  saveRatings();
  syncStars(movie.movie_id);
  renderRatings();
  refreshList(startedAt);
}

function unrate(movieId) {
  state.ratings.delete(String(movieId));
  saveRatings();
  syncStars(movieId);
  renderRatings();
  refreshList(performance.now());
}

function ratingsBody() {
  const body = {};
  for (const [id, entry] of state.ratings) body[id] = entry.stars;
  return body;
}

// --------------------------------------------------------------------------- star controls

function scaleSteps() {
  const { min, max, step } = state.config.rating;
  const steps = [];
  for (let n = 0; min + n * step <= max + 1e-9; n += 1) steps.push(+(min + n * step).toFixed(2));
  return steps;
}

/** A radio group of stars for one movie: keyboard (arrows) and pointer both set a rating. */
function starControl(movie) {
  const id = String(movie.movie_id);
  const half = state.config.rating.step < 1;
  const group = `stars-${(groupCount += 1)}`;
  const set = el("fieldset", { cls: `stars${half ? " halves" : ""}`, attrs: { "data-movie": id } });
  set.append(el("legend", { cls: "sr-only", text: `Your rating of ${displayTitle(movie.title)}` }));
  const current = state.ratings.get(id);
  for (const value of scaleSteps()) {
    const inputId = `${group}-${value}`;
    const input = el("input", {
      attrs: { type: "radio", name: group, id: inputId, value: String(value) },
    });
    input.checked = Boolean(current && current.stars === value);
    input.addEventListener("change", (event) => rate(movie, value, event.timeStamp));
    const side = half ? (value % 1 ? " left" : " right") : "";
    const label = el("label", { cls: `star-label${side}`, attrs: { for: inputId } }, [
      el("span", { cls: "star", attrs: { "aria-hidden": "true" } }),
      el("span", { cls: "sr-only", text: starsText(value) }),
    ]);
    label.dataset.value = String(value);
    set.append(input, label);
  }
  paintStars(set, current ? current.stars : 0);
  return set;
}

function paintStars(set, stars) {
  for (const label of set.querySelectorAll("label")) {
    label.classList.toggle("on", Number(label.dataset.value) <= stars);
  }
  for (const input of set.querySelectorAll("input")) input.checked = Number(input.value) === stars;
}

/** Every star control of a movie shows its current rating (it may be on screen twice). */
function syncStars(movieId) {
  const current = state.ratings.get(String(movieId));
  for (const set of document.querySelectorAll(`fieldset.stars[data-movie="${Number(movieId)}"]`)) {
    paintStars(set, current ? current.stars : 0);
  }
}

// --------------------------------------------------------------------------- movie cards

function moreButton(movie) {
  const name = displayTitle(movie.title);
  const button = el("button", {
    cls: "more",
    text: "More like this",
    attrs: { type: "button", "aria-label": `More like ${name}` },
  });
  button.addEventListener("click", () => openSimilar(movie, button));
  return button;
}

function metaLine(movie) {
  const year = yearOf(movie);
  const parts = [];
  if (year) parts.push(String(year));
  if (movie.genres && movie.genres.length) parts.push(movie.genres.join(", "));
  if (Number.isInteger(movie.ratings)) parts.push(`${movie.ratings} ratings`);
  return parts.join(" \u00b7 ");
}

/** "Because you liked A (5 stars) and B (4 stars)": the rated movies the model says put this
 *  one in the list. One rated low may also have added to its score; it is named as rated,
 *  not as liked, and only when none of them was liked. */
function becauseLine(because) {
  if (!Array.isArray(because) || !because.length) return null;
  const { min, max } = state.config.rating;
  const liked = because.filter((r) => typeof r.rating === "number" && r.rating > (min + max) / 2);
  const named = liked.length ? liked : because;
  const line = el("p", { cls: "because", text: liked.length ? "Because you liked " : "Because you rated " });
  named.forEach((movie, n) => {
    if (n) line.append(n === named.length - 1 ? " and " : ", ");
    line.append(el("strong", { text: displayTitle(movie.title) }));
    if (typeof movie.rating === "number") line.append(` (${starsText(movie.rating)})`);
  });
  return line;
}

/** One movie: title, year and genres, predicted stars and reasons when given, your stars and
 *  "more like this". */
function movieCard(movie) {
  const card = el("li", { cls: "card", attrs: { "data-movie": String(movie.movie_id) } });
  card.append(el("h3", {}, [el("span", { cls: "title-text", text: displayTitle(movie.title) })]));
  card.append(el("p", { cls: "meta", text: metaLine(movie) }));
  if (typeof movie.rating === "number") {
    card.append(el("p", { cls: "predicted", text: `Predicted: ${movie.rating.toFixed(1)} stars` }));
  }
  const because = becauseLine(movie.because);
  if (because) card.append(because);
  card.append(el("div", { cls: "actions" }, [starControl(movie), moreButton(movie)]));
  return card;
}

// --------------------------------------------------------------------------- the main list

function filterBody(withNovelty) {
  const body = {};
  const genre = $("genre").value;
  const decade = $("decade").value;
  if (genre) body.genres = [genre];
  if (decade) body.years = [Number(decade), Number(decade) + 9];
  if (withNovelty) body.novelty = Number($("novelty").value);
  return body;
}

/** The popular chart before any rating, the person's list after; ``startedAt`` (a star
 *  click's time) makes the update a "rate-to-list" measure. */
async function refreshList(startedAt) {
  const seq = restart(listRun);
  const rated = state.ratings.size > 0;
  $("list-heading").textContent = rated ? "Recommended for you" : "Popular movies to rate";
  $("list-intro").hidden = rated;
  $("novelty-field").hidden = !rated;
  const cards = $("list-cards");
  cards.setAttribute("aria-busy", "true");
  let answer;
  try {
    answer = rated
      ? await api("/api/recommend", { ratings: ratingsBody(), ...filterBody(true) }, listRun.abort.signal)
      : await api("/api/chart", filterBody(false), listRun.abort.signal);
  } catch (error) {
    if (isAbort(error) || seq !== listRun.seq) return;
    cards.setAttribute("aria-busy", "false");
    report(error);
    return;
  }
  await configLoaded;
  if (seq !== listRun.seq) return;
  const movies = answer.recommendations || [];
  state.unknown = new Set((answer.unknown_movie_ids || []).map(String));
  // A keyboard user who rated from this list would lose focus with the card: keep it on the
  // same movie when it is still listed, else on the list's heading.
  const focused = cards.contains(document.activeElement) ? document.activeElement : null;
  const focusedMovie = focused && focused.closest(".card").dataset.movie;
  cards.replaceChildren(...movies.map(movieCard));
  cards.setAttribute("aria-busy", "false");
  countUpdate(cards);
  if (focused) {
    const again = cards.querySelector(`.card[data-movie="${focusedMovie}"] .more`);
    (again || $("list-heading")).focus();
  }
  $("list-empty").hidden = movies.length > 0;
  if (!state.watching) showStatus("");
  renderRatings();
  if (startedAt !== undefined) measure("rate-to-list", startedAt);
  if (!state.ready) {
    state.ready = true;
    mark("app-ready");
  }
}

// --------------------------------------------------------------------------- more like this

function openSimilar(movie, opener) {
  state.similarTo = movie;
  state.similarOpener = opener;
  const heading = $("similar-heading");
  heading.textContent = `More like ${displayTitle(movie.title)}`;
  $("similar").hidden = false;
  heading.focus();
  loadSimilar();
}

function closeSimilar() {
  state.similarTo = null;
  restart(similarRun);
  $("similar").hidden = true;
  $("similar-list").replaceChildren();
  const opener = state.similarOpener;
  state.similarOpener = null;
  if (opener && opener.isConnected) opener.focus();
  else $("list-heading").focus();
}

async function loadSimilar() {
  const movie = state.similarTo;
  if (!movie) return;
  const seq = restart(similarRun);
  const list = $("similar-list");
  list.setAttribute("aria-busy", "true");
  let answer;
  try {
    const body = { movie_id: movie.movie_id, ...filterBody(state.ratings.size > 0) };
    answer = await api("/api/similar", body, similarRun.abort.signal);
  } catch (error) {
    if (isAbort(error) || seq !== similarRun.seq) return;
    list.setAttribute("aria-busy", "false");
    report(error);
    return;
  }
  if (seq !== similarRun.seq) return;
  const movies = answer.recommendations || [];
  list.replaceChildren(...movies.map(movieCard));
  list.setAttribute("aria-busy", "false");
  $("similar-empty").hidden = movies.length > 0;
  countUpdate(list);
}

// --------------------------------------------------------------------------- your ratings

let ratingsShown = null; // which ratings the list shows, so that it is rebuilt only on change

/** The "Your ratings" list. Rebuilt only when a rating is added or removed (a changed one is
 *  repainted by syncStars), so that focus stays on the stars a keyboard user is moving. */
function renderRatings() {
  const list = $("yours-list");
  const entries = [...state.ratings.entries()].reverse(); // the latest first
  const shown = `${entries.map(([id]) => id).join(",")}|${[...state.unknown].join(",")}`;
  if (shown === ratingsShown) return;
  ratingsShown = shown;
  $("yours-empty").hidden = entries.length > 0;
  $("forget").hidden = entries.length === 0;
  $("yours-heading").textContent = entries.length
    ? `Your ratings (${entries.length})`
    : "Your ratings";
  list.replaceChildren(
    ...entries.map(([id, entry]) => {
      const movie = { movie_id: Number(id), title: entry.title, genres: entry.genres };
      const name = displayTitle(entry.title);
      const remove = el("button", {
        cls: "remove",
        text: "Remove",
        attrs: { type: "button", "aria-label": `Remove your rating of ${name}` },
      });
      remove.addEventListener("click", () => {
        unrate(id);
        $("yours-heading").focus();
      });
      const year = yearOf(movie);
      const item = el("li", { attrs: { "data-movie": id } }, [
        el("div", { cls: "row" }, [
          el("span", { cls: "title-text", text: year ? `${name} (${year})` : name }),
          remove,
        ]),
        el("div", { cls: "row" }, [starControl(movie), moreButton(movie)]),
      ]);
      if (state.unknown.has(id)) {
        item.append(el("span", { cls: "unknown", text: "Not in this model's catalogue" }));
      }
      return item;
    }),
  );
}

// --------------------------------------------------------------------------- search

function setExpanded(open) {
  $("search").setAttribute("aria-expanded", String(open));
  $("suggestions").hidden = !open;
  if (!open) {
    state.active = -1;
    $("search").removeAttribute("aria-activedescendant");
  }
}

function highlight(index) {
  const options = $("suggestions").querySelectorAll("[role=option]");
  if (!options.length) return;
  state.active = (index + options.length) % options.length;
  options.forEach((option, n) => option.setAttribute("aria-selected", String(n === state.active)));
  const active = options[state.active];
  $("search").setAttribute("aria-activedescendant", active.id);
  active.scrollIntoView({ block: "nearest" });
}

function renderSuggestions(results, query) {
  const box = $("suggestions");
  state.suggestions = results;
  state.active = -1;
  if (!results.length) {
    box.replaceChildren(el("li", { cls: "none", text: `No titles match \u201c${query}\u201d` }));
    setExpanded(true);
    return;
  }
  box.replaceChildren(
    ...results.map((movie, n) => {
      const year = yearOf(movie);
      const sub = [year, Number.isInteger(movie.ratings) ? `${movie.ratings} ratings` : null]
        .filter(Boolean)
        .join(" \u00b7 ");
      const option = el("li", {
        attrs: { role: "option", id: `suggestion-${n}`, "aria-selected": "false" },
      }, [el("span", { cls: "title-text", text: displayTitle(movie.title) }), el("span", { cls: "sub", text: sub })]);
      // mousedown would move focus out of the box before the click lands
      option.addEventListener("mousedown", (event) => event.preventDefault());
      option.addEventListener("click", () => pick(movie));
      return option;
    }),
  );
  setExpanded(true);
}

async function suggest(text, startedAt) {
  const query = text.trim();
  const seq = restart(searchRun);
  if (query.length < MIN_QUERY) {
    setExpanded(false);
    return;
  }
  let answer;
  try {
    answer = await api("/api/search", { query }, searchRun.abort.signal);
  } catch (error) {
    if (isAbort(error) || seq !== searchRun.seq) return;
    $("suggestions").replaceChildren(el("li", { cls: "none", text: "Search is unavailable" }));
    setExpanded(true);
    report(error);
    return;
  }
  if (seq !== searchRun.seq) return;
  renderSuggestions(answer.results || [], query);
  countUpdate($("suggestions"));
  measure("keystroke-to-suggestions", startedAt);
}

function pick(movie) {
  setExpanded(false);
  state.picked = movie;
  $("search").value = "";
  restart(searchRun);
  $("picked-list").replaceChildren(movieCard(movie));
  $("picked").hidden = false;
  showStatus(`${displayTitle(movie.title)}: rate it below, or open more like it.`);
}

function onSearchKey(event) {
  const open = !$("suggestions").hidden;
  const count = state.suggestions.length;
  if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    if (!open || !count) return;
    event.preventDefault();
    highlight(state.active + (event.key === "ArrowDown" ? 1 : -1));
  } else if (event.key === "Enter") {
    event.preventDefault();
    if (open && count) pick(state.suggestions[Math.max(state.active, 0)]);
  } else if (event.key === "Escape") {
    if (open) setExpanded(false);
    else event.target.value = "";
  }
}

// --------------------------------------------------------------------------- start

function fillFilters() {
  const { genres, decades } = state.config;
  $("genre").append(...genres.map((g) => el("option", { text: g, attrs: { value: g } })));
  $("decade").append(...decades.map((d) => el("option", { text: `${d}s`, attrs: { value: String(d) } })));
  $("genre-field").hidden = !genres.length;
  $("decade-field").hidden = !decades.length;
}

function onFilterChange() {
  refreshList();
  if (state.similarTo) loadSimilar();
}

function describeNovelty() {
  const value = Number($("novelty").value);
  const words = ["familiar", "mostly familiar", "mixed", "mostly surprising", "surprising"];
  $("novelty").setAttribute("aria-valuetext", words[Math.round(value * 4)]);
}

async function start() {
  loadRatings();
  const search = $("search");
  search.addEventListener("input", (event) => suggest(search.value, event.timeStamp));
  search.addEventListener("keydown", onSearchKey);
  search.addEventListener("blur", () => setExpanded(false));
  $("genre").addEventListener("change", onFilterChange);
  $("decade").addEventListener("change", onFilterChange);
  $("novelty").addEventListener("change", onFilterChange);
  $("novelty").addEventListener("input", describeNovelty);
  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("similar-close").addEventListener("click", closeSimilar);
  $("forget").addEventListener("click", () => {
    state.ratings.clear();
    saveRatings();
    document.querySelectorAll("fieldset.stars").forEach((set) => paintStars(set, 0));
    renderRatings();
    refreshList();
  });
  // The first list is asked for at once, beside the catalogue's facts; it is drawn (stars
  // need the scale) once both are in.
  configLoaded = api("/api/config")
    .then((config) => {
      state.config = config;
    })
    .catch(report)
    .finally(() => {
      fillFilters();
      renderRatings();
    });
  await refreshList();
}

start();
