// Chaos Monkey in C: the reference strategy (plugins/classic-monkey), draw
// for draw and poll for poll.
//
// In each Auto Scaling group matching `groups` (by name order), with
// probability `probability`, terminate one running, in-service, healthy
// instance picked uniformly at random; wait for the groups to recover and
// publish one notification listing the victims.
//
// Built against wit-bindgen's C bindings (`strategy_plugin.h`, generated
// from wit/ by `cargo xtask build-plugin examples/plugins/c`). Ownership
// follows the bindings: what an import returns is ours to free; what `run`
// and `metadata` return must come from malloc, and the bindings free it
// after the call; `run`'s arguments are ours.

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategy_plugin.h"

#define NAME "classic-monkey-c"
#define VERSION "0.1.0"
#define DESCRIPTION                                                                     \
  "Chaos Monkey in C: terminates one random in-service instance in each matching Auto " \
  "Scaling group, waits for the groups to recover and reports by notification"

#define THROTTLE_RETRIES 3u
#define THROTTLE_BACKOFF_MS 1000u

typedef strategy_plugin_string_t string_t;
typedef wasmonkey_chaos_types_cloud_error_t cloud_error_t;
typedef wasmonkey_chaos_types_instance_t instance_t;
typedef wasmonkey_chaos_types_group_t group_t;
typedef exports_wasmonkey_chaos_strategy_victim_t victim_t;
typedef exports_wasmonkey_chaos_strategy_list_param_t params_t;
typedef exports_wasmonkey_chaos_strategy_param_value_t param_value_t;
typedef exports_wasmonkey_chaos_strategy_run_error_t run_error_t;
typedef wasmonkey_chaos_runtime_log_level_t log_level_t;

#define LEVEL(name) WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_##name
#define CLOUD_ERROR(name) WASMONKEY_CHAOS_TYPES_CLOUD_ERROR_##name
#define VERDICT(name) EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_##name

// -- no WASI -------------------------------------------------------------------

// wasi-libc's vsnprintf shares vfprintf with the path that writes to a FILE,
// which names three WASI functions that are never called for a string.
// Defining them here, failing with ENOSYS, keeps them out of the component's
// imports: this plugin needs no WASI at all.
#define WASI_ENOSYS 52
int32_t __imported_wasi_snapshot_preview1_fd_close(int32_t fd) { return WASI_ENOSYS; }
int32_t __imported_wasi_snapshot_preview1_fd_seek(int32_t fd, int64_t offset, int32_t whence,
                                                  int32_t newoffset) {
  return WASI_ENOSYS;
}
int32_t __imported_wasi_snapshot_preview1_fd_write(int32_t fd, int32_t iovs, int32_t iovs_len,
                                                   int32_t nwritten) {
  return WASI_ENOSYS;
}

// -- strings -------------------------------------------------------------------

/** A C string as a borrowed WIT string. */
static string_t borrowed(const char *s) {
  string_t out;
  strategy_plugin_string_set(&out, s);
  return out;
}

/** A malloc'd C string as an owned WIT string. */
static string_t owned(char *s) {
  return (string_t){.ptr = (uint8_t *)s, .len = strlen(s)};
}

/** `printf` into a fresh malloc'd string. */
static char *format(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  int len = vsnprintf(NULL, 0, fmt, args);
  va_end(args);
  char *out = malloc((size_t)(len < 0 ? 0 : len) + 1);
  if (!out) abort();
  va_start(args, fmt);
  vsnprintf(out, (size_t)len + 1, fmt, args);
  va_end(args);
  return out;
}

/** A growing string. */
typedef struct {
  char *ptr;
  size_t len;
} text_t;

static void text_add_n(text_t *text, const char *s, size_t n) {
  text->ptr = realloc(text->ptr, text->len + n + 1);
  if (!text->ptr) abort();
  memcpy(text->ptr + text->len, s, n);
  text->len += n;
  text->ptr[text->len] = '\0';
}

static void text_add(text_t *text, const char *s) { text_add_n(text, s, strlen(s)); }

/** Append and free a malloc'd string. */
static void text_take(text_t *text, char *s) {
  text_add(text, s);
  free(s);
}

/** The text so far, never NULL (malloc'd). */
static char *text_done(text_t *text) {
  if (!text->ptr) text_add_n(text, "", 0);
  return text->ptr;
}

static bool is(const string_t *s, const char *c) {
  size_t n = strlen(c);
  return s->len == n && memcmp(s->ptr, c, n) == 0;
}

static bool equal(const string_t *a, const string_t *b) {
  return a->len == b->len && memcmp(a->ptr, b->ptr, a->len) == 0;
}

/** Byte order, shorter first on a common prefix: as Rust compares `str`s. */
static int compare(const string_t *a, const string_t *b) {
  int c = memcmp(a->ptr, b->ptr, a->len < b->len ? a->len : b->len);
  if (c != 0) return c;
  return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

/** A WIT string as a malloc'd C string. */
static char *c_string(const string_t *s) { return format("%.*s", (int)s->len, (const char *)s->ptr); }

// -- logging -------------------------------------------------------------------

/** Log a malloc'd message and free it. */
static void log_take(log_level_t level, char *message) {
  string_t m = owned(message);
  wasmonkey_chaos_runtime_log(level, &m);
  free(message);
}

#define LOGF(level, ...) log_take(LEVEL(level), format(__VA_ARGS__))

// -- cloud errors --------------------------------------------------------------

static const char *const ERROR_KINDS[] = {"denied",    "not-found", "budget-exhausted",
                                          "throttled", "invalid",   "backend"};

/** `kind: message`, malloc'd. Every case carries a string at the same place. */
static char *describe(const cloud_error_t *err) {
  const string_t *m = &err->val.denied;
  return format("%s: %.*s", ERROR_KINDS[err->tag], (int)m->len, (const char *)m->ptr);
}

typedef bool (*call_t)(void *ctx, void *ret, cloud_error_t *err);

/** Call `f`, retrying up to 3 times (sleeping 1 s, 2 s, 4 s) while the host
 * answers `throttled`. Other errors are left in `err`. */
static bool retry_throttled(const char *what, call_t f, void *ctx, void *ret, cloud_error_t *err) {
  uint64_t backoff = THROTTLE_BACKOFF_MS;
  uint32_t retries = 0;
  for (;;) {
    if (f(ctx, ret, err)) return true;
    if (err->tag != CLOUD_ERROR(THROTTLED) || retries >= THROTTLE_RETRIES) return false;
    retries++;
    LOGF(DEBUG, "%s: throttled (%.*s); retry %u of %u in %llu ms", what, (int)err->val.throttled.len,
         (const char *)err->val.throttled.ptr, retries, THROTTLE_RETRIES,
         (unsigned long long)backoff);
    wasmonkey_chaos_types_cloud_error_free(err);
    wasmonkey_chaos_runtime_sleep_ms(backoff);
    backoff = backoff > UINT64_MAX / 2 ? UINT64_MAX : backoff * 2;
  }
}

// -- parameters ----------------------------------------------------------------

static const char *const KINDS[] = {"text", "integer", "number", "flag"};

static bool invalid(run_error_t *err, const char *name, char *message) {
  err->tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_INVALID_PARAM;
  err->val.invalid_param = owned(format("%s: %s", name, message));
  free(message);
  return false;
}

static bool get(const params_t *params, const char *name, const param_value_t **out,
                run_error_t *err) {
  for (size_t i = 0; i < params->len; i++) {
    if (is(&params->ptr[i].name, name)) {
      *out = &params->ptr[i].value;
      return true;
    }
  }
  return invalid(err, name, format("missing"));
}

static bool text_param(const params_t *params, const char *name, char **out, run_error_t *err) {
  const param_value_t *value;
  if (!get(params, name, &value, err)) return false;
  if (value->tag != EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT)
    return invalid(err, name, format("expected text, got %s", KINDS[value->tag]));
  *out = c_string(&value->val.text);
  return true;
}

static bool integer_at_least(const params_t *params, const char *name, int64_t least, uint64_t *out,
                             run_error_t *err) {
  const param_value_t *value;
  if (!get(params, name, &value, err)) return false;
  if (value->tag != EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER)
    return invalid(err, name, format("expected integer, got %s", KINDS[value->tag]));
  if (value->val.integer < least)
    return invalid(err, name,
                   format("must be at least %lld, got %lld", (long long)least,
                          (long long)value->val.integer));
  *out = (uint64_t)value->val.integer;
  return true;
}

/** A number as Rust's `{}` prints an f64: the shortest form that reads back. */
static char *number_text(double x) {
  for (int precision = 1; precision < 17; precision++) {
    char *s = format("%.*g", precision, x);
    if (strtod(s, NULL) == x) return s;
    free(s);
  }
  return format("%.17g", x);
}

static bool number_within(const params_t *params, const char *name, double low, double high,
                          double *out, run_error_t *err) {
  const param_value_t *value;
  if (!get(params, name, &value, err)) return false;
  double x;
  if (value->tag == EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_NUMBER) {
    x = value->val.number;
  } else if (value->tag == EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER) {
    x = (double)value->val.integer;
  } else {
    return invalid(err, name, format("expected number, got %s", KINDS[value->tag]));
  }
  if (!(x >= low && x <= high)) {
    char *l = number_text(low), *h = number_text(high), *v = number_text(x);
    char *message = format("must be between %s and %s, got %s", l, h, v);
    free(l);
    free(h);
    free(v);
    return invalid(err, name, message);
  }
  *out = x;
  return true;
}

static exports_wasmonkey_chaos_strategy_param_spec_t spec(const char *name, const char *description,
                                                          param_value_t value) {
  exports_wasmonkey_chaos_strategy_param_spec_t out;
  strategy_plugin_string_dup(&out.name, name);
  strategy_plugin_string_dup(&out.description, description);
  out.default_ = value;
  return out;
}

// -- randomness ----------------------------------------------------------------

/** A uniform index in `0..len` by rejection sampling, as the Rust SDK. */
static bool pick_index(size_t len, size_t *out) {
  if (len == 0) return false;
  uint64_t n = (uint64_t)len;
  uint64_t limit = UINT64_MAX - (UINT64_MAX % n);
  for (;;) {
    uint64_t draw = wasmonkey_chaos_runtime_random_u64();
    if (draw < limit) {
      *out = (size_t)(draw % n);
      return true;
    }
  }
}

/** A uniform number in [0, 1) from the top 53 bits of one draw. */
static double unit(void) {
  return (double)(wasmonkey_chaos_runtime_random_u64() >> 11) / 9007199254740992.0;
}

/** True with probability p; always one draw. */
static bool chance(double p) { return unit() < (p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p); }

// -- wording -------------------------------------------------------------------

static char *seconds(uint64_t ms) { return format("%.1f s", (double)ms / 1000.0); }

static char *plural(size_t count, const char *noun) {
  return count == 1 ? format("1 %s", noun) : format("%zu %ss", count, noun);
}

static char *victim_line(const victim_t *v) {
  const char *fate = NULL;
  char *own_fate = NULL;
  if (v->verdict == VERDICT(RECOVERED)) {
    if (v->recovered_at_ms.is_some) {
      uint64_t at = v->recovered_at_ms.val;
      char *s = seconds(at > v->terminated_at_ms ? at - v->terminated_at_ms : 0);
      own_fate = format("recovered in %s", s);
      free(s);
    } else {
      fate = "recovered";
    }
  } else if (v->verdict == VERDICT(NOT_RECOVERED)) {
    fate = "did not recover in time";
  } else {
    fate = v->dry_run ? "dry run, not terminated" : "recovery not checked";
  }
  const string_t no_group = borrowed("no group");
  const string_t *group = v->group.is_some ? &v->group.val : &no_group;
  char *line = format("%.*s (%.*s, %.*s): %s", (int)v->instance_id.len,
                      (const char *)v->instance_id.ptr, (int)group->len, (const char *)group->ptr,
                      (int)v->zone.len, (const char *)v->zone.ptr, own_fate ? own_fate : fate);
  free(own_fate);
  return line;
}

static char *terminated(const victim_t *victims, size_t count) {
  size_t dry = 0;
  for (size_t i = 0; i < count; i++) dry += victims[i].dry_run;
  char *all = plural(count, "instance");
  char *out;
  if (dry == 0) {
    out = format("Terminated %s", all);
  } else if (dry == count) {
    out = format("Would have terminated %s (dry run)", all);
  } else {
    out = format("Terminated %s (%zu only in dry run)", all, dry);
  }
  free(all);
  return out;
}

static char *verdicts(const victim_t *victims, size_t count) {
  static const struct {
    exports_wasmonkey_chaos_strategy_verdict_t verdict;
    const char *what;
  } CASES[] = {{VERDICT(RECOVERED), "recovered"},
               {VERDICT(NOT_RECOVERED), "did not recover in time"},
               {VERDICT(UNCHECKED), "not checked"}};
  text_t text = {0};
  for (size_t c = 0; c < 3; c++) {
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
      n += !victims[i].dry_run && victims[i].verdict == CASES[c].verdict;
    if (n == 0) continue;
    if (text.len) text_add(&text, ", ");
    text_take(&text, format("%zu %s", n, CASES[c].what));
  }
  return text_done(&text);
}

static char *summary(const victim_t *victims, size_t count, const char *context) {
  text_t text = {0};
  text_take(&text, terminated(victims, count));
  if (*context) {
    text_add(&text, " ");
    text_add(&text, context);
  }
  char *fates = verdicts(victims, count);
  if (*fates) {
    text_add(&text, "; ");
    text_add(&text, fates);
  }
  free(fates);
  text_add(&text, ".");
  return text_done(&text);
}

// -- the fleet -----------------------------------------------------------------

static bool call_list_groups(void *ctx, void *ret, cloud_error_t *err) {
  return wasmonkey_chaos_cloud_list_groups(ctx, ret, err);
}

static bool call_list_instances(void *ctx, void *ret, cloud_error_t *err) {
  return wasmonkey_chaos_cloud_list_instances(ctx, ret, err);
}

typedef struct {
  string_t id, reason;
} terminate_args_t;

static bool call_terminate(void *ctx, void *ret, cloud_error_t *err) {
  terminate_args_t *args = ctx;
  return wasmonkey_chaos_cloud_terminate(&args->id, &args->reason, ret, err);
}

static int by_name(const void *a, const void *b) {
  return compare(&((const group_t *)a)->name, &((const group_t *)b)->name);
}

static int by_id(const void *a, const void *b) {
  return compare(&((const instance_t *)a)->id, &((const instance_t *)b)->id);
}

/** The groups in scope whose names match `glob`, sorted by name. */
static bool select_groups(const char *glob, wasmonkey_chaos_cloud_list_group_t *out,
                          cloud_error_t *err) {
  string_t pattern = borrowed(glob);
  bool all = *glob == '\0' || strcmp(glob, "*") == 0;
  if (!retry_throttled("listing groups", call_list_groups, all ? NULL : &pattern, out, err))
    return false;
  qsort(out->ptr, out->len, sizeof *out->ptr, by_name);
  return true;
}

/** Running instances of the groups matching `glob`, sorted by id. */
static bool running_group_instances(const char *glob, wasmonkey_chaos_cloud_list_instance_t *out,
                                    cloud_error_t *err) {
  wasmonkey_chaos_cloud_instance_state_t running = WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
  wasmonkey_chaos_cloud_instance_filter_t filter = {
      .group_pattern = {.is_some = true, .val = borrowed(*glob ? glob : "*")},
      .tags = {.ptr = NULL, .len = 0},
      .zone = {.is_some = false},
      .states = {.ptr = &running, .len = 1},
  };
  if (!retry_throttled("listing instances", call_list_instances, &filter, out, err)) return false;
  size_t kept = 0;
  for (size_t i = 0; i < out->len; i++) {
    instance_t *instance = &out->ptr[i];
    if (instance->group.is_some && instance->state == running) {
      out->ptr[kept++] = *instance;
    } else {
      wasmonkey_chaos_types_instance_free(instance);
    }
  }
  out->len = kept;
  qsort(out->ptr, out->len, sizeof *out->ptr, by_id);
  return true;
}

static bool in_service_healthy(const instance_t *i) {
  return i->lifecycle.is_some && i->lifecycle.val == WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE &&
         i->healthy;
}

// -- recovery ------------------------------------------------------------------

/** A group being waited for, and its victims still in service. */
typedef struct {
  const string_t *name;
  const string_t **ids;
  size_t count;
  bool pending;
  bool recovered;
  uint64_t at;
} watch_t;

static bool is_recovered(const wasmonkey_chaos_types_group_capacity_t *h) {
  return h->in_service == h->desired && h->pending == 0 && h->terminating == 0 &&
         h->unhealthy == 0;
}

/** Whether an instance has left service (or can no longer be seen). */
static bool out_of_service(const string_t *id) {
  wasmonkey_chaos_probe_instance_t instance;
  cloud_error_t err;
  string_t arg = *id;
  if (!wasmonkey_chaos_probe_describe_instance(&arg, &instance, &err)) {
    // Throttled or failing: look again at the next check; gone or not ours: out.
    bool transient = err.tag == CLOUD_ERROR(THROTTLED) || err.tag == CLOUD_ERROR(BACKEND);
    wasmonkey_chaos_types_cloud_error_free(&err);
    return !transient;
  }
  bool running = instance.state == WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_PENDING ||
                 instance.state == WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
  bool serving = instance.lifecycle.is_some &&
                 (instance.lifecycle.val == WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_PENDING ||
                  instance.lifecycle.val == WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE);
  wasmonkey_chaos_types_instance_free(&instance);
  return !(running && serving);
}

/** The names of the pending groups, joined by ", " (malloc'd). */
static char *pending_names(const watch_t *watch, size_t groups) {
  text_t text = {0};
  for (size_t g = 0; g < groups; g++) {
    if (!watch[g].pending) continue;
    if (text.len) text_add(&text, ", ");
    text_add_n(&text, (const char *)watch[g].name->ptr, watch[g].name->len);
  }
  return text_done(&text);
}

/** Wait for each group (sorted by name), and its victims to leave service. */
static void wait_for(watch_t *watch, size_t groups, uint64_t timeout_ms, uint64_t poll_ms) {
  uint64_t started = wasmonkey_chaos_runtime_now_ms();
  uint64_t deadline = started > UINT64_MAX - timeout_ms ? UINT64_MAX : started + timeout_ms;
  char *limit = seconds(timeout_ms);
  char *names = pending_names(watch, groups);
  LOGF(INFO, "waiting up to %s for %s to recover", limit, names);
  free(names);
  for (;;) {
    size_t left = 0;
    for (size_t g = 0; g < groups; g++) {
      watch_t *w = &watch[g];
      if (!w->pending) continue;
      size_t kept = 0;
      for (size_t i = 0; i < w->count; i++)
        if (!out_of_service(w->ids[i])) w->ids[kept++] = w->ids[i];
      w->count = kept;
      wasmonkey_chaos_probe_group_capacity_t health;
      cloud_error_t err;
      string_t group = *w->name;
      if (wasmonkey_chaos_probe_group_health(&group, &health, &err)) {
        if (w->count == 0 && is_recovered(&health)) {
          uint64_t at = wasmonkey_chaos_runtime_now_ms();
          char *took = seconds(at > started ? at - started : 0);
          LOGF(INFO, "%.*s recovered after %s", (int)w->name->len, (const char *)w->name->ptr, took);
          free(took);
          w->recovered = true;
          w->at = at;
          w->pending = false;
        }
        wasmonkey_chaos_types_group_capacity_free(&health);
      } else {
        char *why = describe(&err);
        if (err.tag == CLOUD_ERROR(THROTTLED) || err.tag == CLOUD_ERROR(BACKEND)) {
          LOGF(DEBUG, "checking %.*s: %s; will retry", (int)w->name->len,
               (const char *)w->name->ptr, why);
        } else {
          LOGF(WARN, "cannot check %.*s: %s; giving up on it", (int)w->name->len,
               (const char *)w->name->ptr, why);
          w->pending = false;
        }
        free(why);
        wasmonkey_chaos_types_cloud_error_free(&err);
      }
      left += w->pending;
    }
    if (left == 0) break;
    uint64_t now = wasmonkey_chaos_runtime_now_ms();
    if (now >= deadline) {
      names = pending_names(watch, groups);
      LOGF(WARN, "%s did not recover within %s", names, limit);
      free(names);
      break;
    }
    uint64_t poll = poll_ms < 1 ? 1 : poll_ms;
    wasmonkey_chaos_runtime_sleep_ms(poll < deadline - now ? poll : deadline - now);
  }
  free(limit);
}

static int watch_by_name(const void *a, const void *b) {
  return compare(((const watch_t *)a)->name, ((const watch_t *)b)->name);
}

/** Set each victim's verdict by waiting for its group to recover. */
static void settle(victim_t *victims, size_t count, uint64_t timeout_ms, uint64_t poll_ms) {
  watch_t *watch = calloc(count ? count : 1, sizeof *watch);
  if (!watch) abort();
  size_t groups = 0;
  for (size_t i = 0; i < count; i++) {
    victim_t *v = &victims[i];
    v->verdict = VERDICT(UNCHECKED);
    v->recovered_at_ms.is_some = false;
    if (!v->group.is_some || v->dry_run) continue;
    size_t g = 0;
    while (g < groups && !equal(watch[g].name, &v->group.val)) g++;
    if (g == groups) {
      watch[groups++] = (watch_t){.name = &v->group.val, .ids = calloc(count, sizeof(string_t *)),
                                  .pending = true};
      if (!watch[g].ids) abort();
    }
    watch[g].ids[watch[g].count++] = &v->instance_id;
  }
  if (groups > 0) {
    qsort(watch, groups, sizeof *watch, watch_by_name);
    wait_for(watch, groups, timeout_ms, poll_ms);
    for (size_t i = 0; i < count; i++) {
      victim_t *v = &victims[i];
      if (v->dry_run || !v->group.is_some) continue;
      for (size_t g = 0; g < groups; g++) {
        if (!equal(watch[g].name, &v->group.val)) continue;
        if (watch[g].recovered) {
          v->verdict = VERDICT(RECOVERED);
          v->recovered_at_ms = (strategy_plugin_option_u64_t){.is_some = true, .val = watch[g].at};
        } else {
          v->verdict = VERDICT(NOT_RECOVERED);
        }
      }
    }
  }
  for (size_t g = 0; g < groups; g++) free(watch[g].ids);
  free(watch);
}

// -- the strategy --------------------------------------------------------------

/** Publish the victims' fates; a failure is logged, never fatal. */
static void announce(const char *channel, const victim_t *victims, size_t count) {
  if (count == 0) {
    LOGF(INFO, "no victim: no notification");
    return;
  }
  char *name;
  if (*channel) {
    name = format("%s", channel);
  } else {
    strategy_plugin_list_string_t granted;
    wasmonkey_chaos_notify_channels(&granted);
    if (granted.len == 0) {
      strategy_plugin_list_string_free(&granted);
      LOGF(INFO, "no notification channel granted: not notifying");
      return;
    }
    name = c_string(&granted.ptr[0]);
    strategy_plugin_list_string_free(&granted);
  }
  char *done = terminated(victims, count);
  string_t subject = owned(format("%s: %s", NAME, done));
  free(done);
  text_t body = {0};
  for (size_t i = 0; i < count; i++) {
    if (i) text_add(&body, "\n");
    text_take(&body, victim_line(&victims[i]));
  }
  string_t ch = borrowed(name), text = owned(text_done(&body));
  cloud_error_t err;
  if (!wasmonkey_chaos_notify_publish(&ch, &subject, &text, &err)) {
    char *why = describe(&err);
    LOGF(WARN, "publishing to %s failed: %s", name, why);
    free(why);
    wasmonkey_chaos_types_cloud_error_free(&err);
  }
  strategy_plugin_string_free(&subject);
  strategy_plugin_string_free(&text);
  free(name);
}

static bool experiment(const params_t *params, exports_wasmonkey_chaos_strategy_outcome_t *ret,
                       run_error_t *err) {
  char *glob = NULL, *channel = NULL;
  double probability;
  uint64_t timeout_s, poll_s;
  if (!text_param(params, "groups", &glob, err) ||
      !number_within(params, "probability", 0.0, 1.0, &probability, err) ||
      !integer_at_least(params, "recovery-timeout-secs", 0, &timeout_s, err) ||
      !integer_at_least(params, "poll-secs", 1, &poll_s, err) ||
      !text_param(params, "channel", &channel, err)) {
    free(glob);
    free(channel);
    return false;
  }
  uint64_t timeout_ms = timeout_s > UINT64_MAX / 1000 ? UINT64_MAX : timeout_s * 1000;
  uint64_t poll_ms = poll_s > UINT64_MAX / 1000 ? UINT64_MAX : poll_s * 1000;

  wasmonkey_chaos_cloud_list_group_t groups;
  wasmonkey_chaos_cloud_list_instance_t instances;
  cloud_error_t cloud_err;
  if (!select_groups(glob, &groups, &cloud_err)) goto cloud_failed;
  if (!running_group_instances(glob, &instances, &cloud_err)) {
    wasmonkey_chaos_cloud_list_group_free(&groups);
    goto cloud_failed;
  }

  victim_t *victims = calloc(groups.len ? groups.len : 1, sizeof *victims);
  const instance_t **pool = calloc(instances.len ? instances.len : 1, sizeof *pool);
  if (!victims || !pool) abort();
  size_t count = 0, eligible = 0;
  for (size_t g = 0; g < groups.len; g++) {
    const string_t *name = &groups.ptr[g].name;
    size_t size = 0;
    for (size_t i = 0; i < instances.len; i++) {
      const instance_t *instance = &instances.ptr[i];
      if (equal(&instance->group.val, name) && in_service_healthy(instance)) pool[size++] = instance;
    }
    if (size == 0) {
      LOGF(INFO, "%.*s: no running, in-service, healthy instance", (int)name->len,
           (const char *)name->ptr);
      continue;
    }
    eligible++;
    if (!chance(probability)) {
      LOGF(INFO, "%.*s: spared this time", (int)name->len, (const char *)name->ptr);
      continue;
    }
    size_t picked;
    if (!pick_index(size, &picked)) continue;
    const string_t *id = &pool[picked]->id;
    char *reason = format("%s: random victim in %.*s", NAME, (int)name->len, (const char *)name->ptr);
    char *what = format("terminating %.*s", (int)id->len, (const char *)id->ptr);
    terminate_args_t args = {.id = *id, .reason = borrowed(reason)};
    wasmonkey_chaos_cloud_termination_t done;
    cloud_error_t refused;
    bool ok = retry_throttled(what, call_terminate, &args, &done, &refused);
    free(what);
    free(reason);
    if (!ok) {
      char *why = describe(&refused);
      bool stop = refused.tag == CLOUD_ERROR(BUDGET_EXHAUSTED);
      if (stop) {
        LOGF(INFO, "not terminating %.*s: %s; stopping", (int)id->len, (const char *)id->ptr, why);
      } else if (refused.tag == CLOUD_ERROR(BACKEND)) {
        LOGF(ERROR, "terminating %.*s failed: %s; skipping it", (int)id->len, (const char *)id->ptr,
             why);
      } else {
        LOGF(WARN, "not terminating %.*s: %s; skipping it", (int)id->len, (const char *)id->ptr,
             why);
      }
      free(why);
      wasmonkey_chaos_types_cloud_error_free(&refused);
      if (stop) break;
      continue;
    }
    LOGF(INFO, "%.*s: terminated %.*s%s", (int)name->len, (const char *)name->ptr, (int)id->len,
         (const char *)id->ptr, done.dry_run ? " (dry run)" : "");
    // The termination's strings move into the victim.
    victims[count++] = (victim_t){
        .instance_id = done.instance_id,
        .group = done.group,
        .zone = done.zone,
        .terminated_at_ms = done.at_ms,
        .dry_run = done.dry_run,
        .verdict = VERDICT(UNCHECKED),
        .recovered_at_ms = {.is_some = false},
    };
  }
  free(pool);
  wasmonkey_chaos_cloud_list_instance_free(&instances);

  settle(victims, count, timeout_ms, poll_ms);
  announce(channel, victims, count);
  char *groups_text = plural(groups.len, "group");
  char *context =
      format("across %zu eligible of %s matching \"%s\"", eligible, groups_text, glob);
  ret->victims = (exports_wasmonkey_chaos_strategy_list_victim_t){.ptr = victims, .len = count};
  ret->summary = owned(summary(victims, count, context));
  free(context);
  free(groups_text);
  wasmonkey_chaos_cloud_list_group_free(&groups);
  free(glob);
  free(channel);
  return true;

cloud_failed:
  // A cloud error that ends the run becomes run-error.cloud (it moves).
  err->tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
  err->val.cloud = cloud_err;
  free(glob);
  free(channel);
  return false;
}

void exports_wasmonkey_chaos_strategy_metadata(exports_wasmonkey_chaos_strategy_plugin_metadata_t *ret) {
  enum { COUNT = 5 };
  exports_wasmonkey_chaos_strategy_param_spec_t *specs = malloc(COUNT * sizeof *specs);
  if (!specs) abort();
  param_value_t text_all = {.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT};
  strategy_plugin_string_dup(&text_all.val.text, "*");
  param_value_t text_empty = {.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT};
  strategy_plugin_string_dup(&text_empty.val.text, "");
  specs[0] = spec("groups",
                  "Glob over the names of the Auto Scaling groups to act on (`*`, `?`, `[ab]`)",
                  text_all);
  specs[1] = spec("probability", "Chance, from 0 to 1, that each eligible group loses an instance",
                  (param_value_t){.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_NUMBER,
                                  .val.number = 1.0});
  specs[2] = spec("recovery-timeout-secs",
                  "How long to wait for the affected groups to recover, in seconds",
                  (param_value_t){.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER,
                                  .val.integer = 900});
  specs[3] = spec("poll-secs", "How often to check whether the affected groups recovered, in seconds",
                  (param_value_t){.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER,
                                  .val.integer = 5});
  specs[4] = spec("channel",
                  "Notification channel alias; empty means the first granted channel, if any",
                  text_empty);
  strategy_plugin_string_dup(&ret->name, NAME);
  strategy_plugin_string_dup(&ret->version, VERSION);
  strategy_plugin_string_dup(&ret->description, DESCRIPTION);
  ret->params = (exports_wasmonkey_chaos_strategy_list_param_spec_t){.ptr = specs, .len = COUNT};
}

bool exports_wasmonkey_chaos_strategy_run(params_t *params,
                                          exports_wasmonkey_chaos_strategy_outcome_t *ret,
                                          run_error_t *err) {
  bool ok = experiment(params, ret, err);
  exports_wasmonkey_chaos_strategy_list_param_free(params);
  return ok;
}
