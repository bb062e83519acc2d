// {{name}}: a wasmonkey chaos strategy. Terminates one random running,
// in-service, healthy instance in the groups matching `groups`.
//
// `strategy_plugin.h` is wit-bindgen's C binding of wit/, generated into
// build/gen/ at each build. What an import returns is ours to free; what
// `run` and `metadata` return must come from malloc (the bindings free it
// after the call); `run`'s arguments are ours. No stdio: log with
// wasmonkey_chaos_runtime_log, and the component needs no WASI.

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "strategy_plugin.h"

typedef strategy_plugin_string_t string_t;

/** `a` + `b` + `c` as a fresh malloc'd WIT string. */
static string_t concat(const char *a, const string_t *b, const char *c) {
  size_t la = strlen(a), lc = strlen(c);
  string_t out = {.ptr = malloc(la + b->len + lc + 1), .len = la + b->len + lc};
  if (!out.ptr) abort();
  memcpy(out.ptr, a, la);
  memcpy(out.ptr + la, b->ptr, b->len);
  memcpy(out.ptr + la + b->len, c, lc);
  return out;
}

static void log_line(wasmonkey_chaos_runtime_log_level_t level, string_t message) {
  wasmonkey_chaos_runtime_log(level, &message);
  strategy_plugin_string_free(&message);
}

void exports_wasmonkey_chaos_strategy_metadata(exports_wasmonkey_chaos_strategy_plugin_metadata_t *ret) {
  exports_wasmonkey_chaos_strategy_param_spec_t *groups = malloc(sizeof *groups);
  if (!groups) abort();
  strategy_plugin_string_dup(&groups->name, "groups");
  strategy_plugin_string_dup(&groups->description,
                             "Glob over the names of the Auto Scaling groups to act on");
  groups->default_.tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT;
  strategy_plugin_string_dup(&groups->default_.val.text, "*");
  strategy_plugin_string_dup(&ret->name, "{{name}}");
  strategy_plugin_string_dup(&ret->version, "0.1.0");
  strategy_plugin_string_dup(&ret->description, "{{description}}");
  ret->params = (exports_wasmonkey_chaos_strategy_list_param_spec_t){.ptr = groups, .len = 1};
}

bool exports_wasmonkey_chaos_strategy_run(exports_wasmonkey_chaos_strategy_list_param_t *params,
                                          exports_wasmonkey_chaos_strategy_outcome_t *ret,
                                          exports_wasmonkey_chaos_strategy_run_error_t *err) {
  // The host hands over every declared parameter, of its declared kind.
  string_t glob = {0};
  for (size_t i = 0; i < params->len; i++) {
    exports_wasmonkey_chaos_strategy_param_t *p = &params->ptr[i];
    if (p->name.len == 6 && memcmp(p->name.ptr, "groups", 6) == 0 &&
        p->value.tag == EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT) {
      glob = p->value.val.text;
    }
  }
  wasmonkey_chaos_cloud_instance_state_t running = WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
  wasmonkey_chaos_cloud_instance_filter_t filter = {
      .group_pattern = {.is_some = true, .val = glob},
      .zone = {.is_some = false},
      .states = {.ptr = &running, .len = 1},
  };
  // Only instances inside the operator's scope are ever listed.
  wasmonkey_chaos_cloud_list_instance_t instances;
  wasmonkey_chaos_cloud_cloud_error_t cloud_err;
  if (!wasmonkey_chaos_cloud_list_instances(&filter, &instances, &cloud_err)) {
    err->tag = EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
    err->val.cloud = cloud_err;
    exports_wasmonkey_chaos_strategy_list_param_free(params);
    return false;
  }
  size_t healthy = 0;
  for (size_t i = 0; i < instances.len; i++) {
    wasmonkey_chaos_cloud_instance_t *instance = &instances.ptr[i];
    bool in_service = instance->lifecycle.is_some &&
                      instance->lifecycle.val == WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE;
    if (in_service && instance->healthy) instances.ptr[healthy++] = *instance;
    else wasmonkey_chaos_types_instance_free(instance);
  }
  instances.len = healthy;
  ret->victims = (exports_wasmonkey_chaos_strategy_list_victim_t){.ptr = NULL, .len = 0};
  if (healthy == 0) {
    ret->summary = concat("No healthy instance in groups matching \"", &glob, "\".");
  } else {
    // The run's seeded random stream: the same --seed picks the same victim.
    string_t id = instances.ptr[wasmonkey_chaos_runtime_random_u64() % healthy].id;
    string_t reason;
    strategy_plugin_string_set(&reason, "{{name}}: random victim");
    wasmonkey_chaos_cloud_termination_t done;
    if (!wasmonkey_chaos_cloud_terminate(&id, &reason, &done, &cloud_err)) {
      // A refusal (scope, blast radius, grants) is a typed error, not a crash.
      string_t *why = &cloud_err.val.denied;  // every case carries its message here
      log_line(WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_WARN, concat("not terminating: ", why, ""));
      ret->summary = concat("Did not terminate: ", why, ".");
      wasmonkey_chaos_types_cloud_error_free(&cloud_err);
    } else {
      log_line(WASMONKEY_CHAOS_RUNTIME_LOG_LEVEL_INFO, concat("terminated ", &done.instance_id, ""));
      ret->summary = concat(done.dry_run ? "Would have terminated " : "Terminated ",
                            &done.instance_id, ".");
      exports_wasmonkey_chaos_strategy_victim_t *victim = malloc(sizeof *victim);
      if (!victim) abort();
      // The termination's strings move into the victim.
      *victim = (exports_wasmonkey_chaos_strategy_victim_t){
          .instance_id = done.instance_id,
          .group = done.group,
          .zone = done.zone,
          .terminated_at_ms = done.at_ms,
          .dry_run = done.dry_run,
          // The host measures recovery itself; this plugin does not wait.
          .verdict = EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_UNCHECKED,
          .recovered_at_ms = {.is_some = false},
      };
      ret->victims = (exports_wasmonkey_chaos_strategy_list_victim_t){.ptr = victim, .len = 1};
    }
  }
  wasmonkey_chaos_cloud_list_instance_free(&instances);
  exports_wasmonkey_chaos_strategy_list_param_free(params);
  return true;
}
