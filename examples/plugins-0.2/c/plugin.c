// Oldest first in C: the reference strategy of contract 0.2
// (plugins/oldest-first), call for call.
//
// Counts the running instances of the groups matching `groups`, reads them
// `page-size` at a time, and stops the `count` launched longest ago (ties by
// id) for `stop-secs` each; the host starts each again and measures its
// group's recovery.
//
// Built against wit-bindgen's C bindings of `wit/` (contract 0.2.0, generated
// by `cargo xtask build-plugin examples/plugins-0.2/c`). What an import
// returns is ours to free; what `run` and `metadata` return must come from
// malloc, and the bindings free it after the call.

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strategy_plugin.h"

#define NAME "oldest-first-c"
#define VERSION "0.1.0"
#define DESCRIPTION \
  "Oldest first in C: stops the oldest running instances of the matching groups for a while"

typedef strategy_plugin_string_t string_t;
typedef wasmonkey_chaos_types_cloud_error_t cloud_error_t;
typedef wasmonkey_chaos_cloud_instance_t instance_t;
typedef exports_wasmonkey_chaos_strategy_list_param_t params_t;
typedef exports_wasmonkey_chaos_strategy_param_value_t param_value_t;
typedef exports_wasmonkey_chaos_strategy_run_error_t run_error_t;

#define LEVEL(name) WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_##name
#define VALUE(name) EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_##name

// No WASI: wasi-libc's vsnprintf names three WASI functions it never calls
// for a string; defined here, they stay out of the component's imports.
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

/** A malloc'd C string as an owned WIT string. */
static string_t owned(char *s) { return (string_t){.ptr = (uint8_t *)s, .len = strlen(s)}; }

/** Log a malloc'd message and free it. */
static void log_take(wasmonkey_chaos_runtime_log_level_t level, char *message) {
  string_t m = owned(message);
  wasmonkey_chaos_runtime_log(level, &m);
  free(message);
}

/** Append a malloc'd line to `lines` ("; " between), freeing it. */
static void add_line(char **lines, char *line) {
  char *joined = *lines ? format("%s; %s", *lines, line) : format("%s", line);
  free(*lines);
  free(line);
  *lines = joined;
}

static bool is(const string_t *s, const char *c) {
  size_t n = strlen(c);
  return s->len == n && memcmp(s->ptr, c, n) == 0;
}

#define S(s) (int)(s).len, (const char *)(s).ptr

static const char *const ERROR_KINDS[] = {"denied",    "not-found", "budget-exhausted",
                                          "throttled", "invalid",   "backend"};

static const param_value_t *param(const params_t *params, const char *name, uint8_t tag) {
  for (size_t i = 0; i < params->len; i++) {
    if (is(&params->ptr[i].name, name) && params->ptr[i].value.tag == tag)
      return &params->ptr[i].value;
  }
  return NULL;
}

static int64_t integer(const params_t *params, const char *name, int64_t fallback) {
  const param_value_t *v = param(params, name, VALUE(INTEGER));
  return v ? v->val.integer : fallback;
}

static int64_t clamp(int64_t x, int64_t low, int64_t high) {
  return x < low ? low : x > high ? high : x;
}

/** By launch time, then id in byte order (as Rust compares `str`s). */
static int oldest_first(const void *a, const void *b) {
  const instance_t *x = a, *y = b;
  if (x->launched_at_ms != y->launched_at_ms) return x->launched_at_ms < y->launched_at_ms ? -1 : 1;
  size_t n = x->id.len < y->id.len ? x->id.len : y->id.len;
  int c = memcmp(x->id.ptr, y->id.ptr, n);
  if (c != 0) return c;
  return x->id.len < y->id.len ? -1 : x->id.len > y->id.len ? 1 : 0;
}

static bool experiment(const params_t *params, exports_wasmonkey_chaos_strategy_outcome_t *ret,
                       run_error_t *err) {
  const param_value_t *groups_value = param(params, "groups", VALUE(TEXT));
  char *groups = groups_value ? format("%.*s", S(groups_value->val.text)) : format("*");
  size_t count = (size_t)clamp(integer(params, "count", 1), 0, 1000000);
  uint64_t stop_ms = (uint64_t)clamp(integer(params, "stop-secs", 60), 0, INT64_MAX / 1000) * 1000;
  uint32_t page_size = (uint32_t)clamp(integer(params, "page-size", 100), 1, 1000);

  wasmonkey_chaos_cloud_instance_state_t running_state = WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
  wasmonkey_chaos_cloud_instance_filter_t filter = {
      .group_pattern = {.is_some = true, .val = owned(groups)},
      .tags = {.ptr = NULL, .len = 0},
      .zone = {.is_some = false},
      .states = {.ptr = &running_state, .len = 1},
  };
  cloud_error_t cloud_err;
  uint32_t total = 0;
  if (!wasmonkey_chaos_cloud_count_instances(&filter, &total, &cloud_err)) goto cloud_failed;

  instance_t *running = NULL;
  size_t len = 0;
  strategy_plugin_option_string_t after = {.is_some = false};
  for (;;) {
    wasmonkey_chaos_cloud_instance_page_t page;
    bool ok = wasmonkey_chaos_cloud_list_instances_page(
        &filter, after.is_some ? &after.val : NULL, page_size, &page, &cloud_err);
    strategy_plugin_option_string_free(&after);
    if (!ok) {
      for (size_t i = 0; i < len; i++) wasmonkey_chaos_cloud_instance_free(&running[i]);
      free(running);
      goto cloud_failed;
    }
    // The page's instances move into `running`.
    running = realloc(running, (len + page.instances.len + 1) * sizeof *running);
    if (!running) abort();
    memcpy(running + len, page.instances.ptr, page.instances.len * sizeof *running);
    len += page.instances.len;
    free(page.instances.ptr);
    after = page.next;
    if (!after.is_some) break;
  }
  log_take(LEVEL(INFO), format("%zu running in %s (%u counted), read %u at a time", len, groups,
                               total, page_size));
  qsort(running, len, sizeof *running, oldest_first);

  char *lines = NULL;
  size_t stopped = 0;
  for (size_t i = 0; i < len && i < count; i++) {
    const instance_t *instance = &running[i];
    string_t reason = owned(format("oldest first: launched at %lld ms, %.*s",
                                   (long long)instance->launched_at_ms, S(instance->instance_type)));
    wasmonkey_chaos_cloud_fault_t fault;
    cloud_error_t refused;
    bool ok = wasmonkey_chaos_cloud_stop((string_t *)&instance->id, stop_ms, &reason, &fault,
                                         &refused);
    free(reason.ptr);
    if (!ok) {
      const char *kind = ERROR_KINDS[refused.tag];
      log_take(LEVEL(WARN), format("%.*s: stop refused (%s)", S(instance->id), kind));
      add_line(&lines, format("refused %.*s: %s", S(instance->id), kind));
      wasmonkey_chaos_types_cloud_error_free(&refused);
      continue;
    }
    stopped++;
    const char *market =
        instance->market == WASMONKEY_CHAOS_TYPES_MARKET_SPOT ? "spot" : "on-demand";
    add_line(&lines, format("stopped %.*s (%.*s, %s) until %llu ms", S(instance->id),
                            S(instance->instance_type), market,
                            (unsigned long long)(fault.until_ms.is_some ? fault.until_ms.val : 0)));
    wasmonkey_chaos_types_fault_free(&fault);
  }
  if (stopped > 0) wasmonkey_chaos_runtime_sleep_ms(stop_ms);
  ret->victims = (exports_wasmonkey_chaos_strategy_list_victim_t){.ptr = NULL, .len = 0};
  ret->summary = owned(format("oldest-first: stopped %zu of %zu running: %s", stopped, len,
                              lines ? lines : ""));
  free(lines);
  for (size_t i = 0; i < len; i++) wasmonkey_chaos_cloud_instance_free(&running[i]);
  free(running);
  free(groups);
  return true;

cloud_failed:
  // A cloud error that ends the run becomes run-error.cloud (it moves).
  err->tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
  err->val.cloud = cloud_err;
  free(groups);
  return false;
}

static exports_wasmonkey_chaos_strategy_param_spec_t spec(const char *name, const char *description,
                                                          param_value_t value) {
  exports_wasmonkey_chaos_strategy_param_spec_t out;
  strategy_plugin_string_dup(&out.name, name);
  strategy_plugin_string_dup(&out.description, description);
  out.default_ = value;
  return out;
}

static param_value_t integer_value(int64_t x) {
  return (param_value_t){.tag = VALUE(INTEGER), .val.integer = x};
}

void exports_wasmonkey_chaos_strategy_metadata(exports_wasmonkey_chaos_strategy_plugin_metadata_t *ret) {
  enum { COUNT = 4 };
  exports_wasmonkey_chaos_strategy_param_spec_t *specs = malloc(COUNT * sizeof *specs);
  if (!specs) abort();
  param_value_t any = {.tag = VALUE(TEXT)};
  strategy_plugin_string_dup(&any.val.text, "*");
  specs[0] = spec("groups", "Auto Scaling group name pattern (`*` for any)", any);
  specs[1] = spec("count", "how many of the oldest instances to stop", integer_value(1));
  specs[2] = spec("stop-secs", "how long each stays stopped", integer_value(60));
  specs[3] = spec("page-size", "instances read per page", integer_value(100));
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
