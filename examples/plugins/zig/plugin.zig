//! Chaos Monkey in Zig: the reference strategy (plugins/classic-monkey), draw
//! for draw and poll for poll.
//!
//! In each Auto Scaling group matching `groups` (by name order), with
//! probability `probability`, terminate one running, in-service, healthy
//! instance picked uniformly at random; wait for the groups to recover and
//! publish one notification listing the victims.
//!
//! Built on wit-bindgen's C bindings, translated to Zig (`bindings`) by
//! `cargo xtask build-plugin examples/plugins/zig`. What an import returns is
//! ours to free; what `run` and `metadata` return must come from `malloc`
//! (the bindings `free` it after the call); `run`'s arguments are ours.

const std = @import("std");
const c = @import("bindings");

/// A panic traps (the host reports it, naming the plugin): the default
/// handler would print a trace through WASI, which plugins do without.
pub const panic = std.debug.no_panic;

const NAME = "classic-monkey-zig";
const VERSION = "0.1.0";
const DESCRIPTION = "Chaos Monkey in Zig: terminates one random in-service instance in each " ++
    "matching Auto Scaling group, waits for the groups to recover and reports by notification";

const THROTTLE_RETRIES: u32 = 3;
const THROTTLE_BACKOFF_MS: u64 = 1000;

const String = c.strategy_plugin_string_t;
const CloudError = c.wasmonkey_chaos_types_cloud_error_t;
const Instance = c.wasmonkey_chaos_types_instance_t;
const Group = c.wasmonkey_chaos_types_group_t;
const Victim = c.exports_wasmonkey_chaos_strategy_victim_t;
const Params = c.exports_wasmonkey_chaos_strategy_list_param_t;
const ParamValue = c.exports_wasmonkey_chaos_strategy_param_value_t;
const ParamSpec = c.exports_wasmonkey_chaos_strategy_param_spec_t;
const RunError = c.exports_wasmonkey_chaos_strategy_run_error_t;
const Outcome = c.exports_wasmonkey_chaos_strategy_outcome_t;

const THROTTLED: u8 = c.WASMONKEY_CHAOS_TYPES_CLOUD_ERROR_THROTTLED;
const BACKEND: u8 = c.WASMONKEY_CHAOS_TYPES_CLOUD_ERROR_BACKEND;
const BUDGET_EXHAUSTED: u8 = c.WASMONKEY_CHAOS_TYPES_CLOUD_ERROR_BUDGET_EXHAUSTED;
const RUNNING: u8 = c.WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_RUNNING;
const PENDING: u8 = c.WASMONKEY_CHAOS_TYPES_INSTANCE_STATE_PENDING;
const IN_SERVICE: u8 = c.WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_IN_SERVICE;
const LIFECYCLE_PENDING: u8 = c.WASMONKEY_CHAOS_TYPES_LIFECYCLE_STATE_PENDING;
const TEXT: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_TEXT;
const INTEGER: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_INTEGER;
const NUMBER: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_PARAM_VALUE_NUMBER;
const RECOVERED: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_RECOVERED;
const NOT_RECOVERED: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_NOT_RECOVERED;
const UNCHECKED: u8 = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_VERDICT_UNCHECKED;

/// Scratch memory for one call; everything handed to the bindings is copied
/// into `malloc`ed memory instead (see `own`).
const gpa = std.heap.c_allocator;

const Level = enum(u8) { debug = 1, info = 2, warn = 3, err = 4 };

// -- strings ---------------------------------------------------------------------

/// The bytes of a WIT string.
fn bytes(s: String) []const u8 {
    if (s.len == 0) return "";
    return s.ptr[0..s.len];
}

/// The elements of a list the bindings hand over.
fn items(comptime T: type, ptr: [*c]T, len: usize) []T {
    if (len == 0) return &.{};
    const many: [*]T = ptr;
    return many[0..len];
}

/// A borrowed WIT string over `text` (for arguments to imports).
fn borrow(text: []const u8) String {
    return .{ .ptr = @constCast(text.ptr), .len = text.len };
}

/// A `malloc`ed copy of `text`, for what the bindings will `free`.
fn own(text: []const u8) String {
    if (text.len == 0) return .{ .ptr = null, .len = 0 };
    const raw = std.c.malloc(text.len) orelse @panic("out of memory");
    const out: [*]u8 = @ptrCast(raw);
    @memcpy(out[0..text.len], text);
    return .{ .ptr = out, .len = text.len };
}

fn print(comptime fmt: []const u8, args: anytype) []u8 {
    return std.fmt.allocPrint(gpa, fmt, args) catch @panic("out of memory");
}

fn log(level: Level, comptime fmt: []const u8, args: anytype) void {
    const text = print(fmt, args);
    defer gpa.free(text);
    var m = borrow(text);
    c.wasmonkey_chaos_runtime_log(@intFromEnum(level), &m);
}

/// Byte order, as Rust compares `str`s.
fn lessThan(a: []const u8, b: []const u8) bool {
    return std.mem.order(u8, a, b) == .lt;
}

// -- cloud errors ----------------------------------------------------------------

const ERROR_KINDS = [_][]const u8{ "denied", "not-found", "budget-exhausted", "throttled", "invalid", "backend" };

/// The message of a cloud error: every case carries a string at the same place.
fn message(err: *const CloudError) []const u8 {
    return bytes(err.val.denied);
}

/// `kind: message`.
fn describe(err: *const CloudError) []u8 {
    return print("{s}: {s}", .{ ERROR_KINDS[err.tag], message(err) });
}

/// Call `f` (a function returning `true` on success), retrying up to 3 times
/// (sleeping 1 s, 2 s, 4 s) while the host answers `throttled`.
fn retryThrottled(what: []const u8, f: anytype, args: anytype, err: *CloudError) bool {
    var backoff = THROTTLE_BACKOFF_MS;
    var retries: u32 = 0;
    while (true) {
        if (@call(.auto, f, args)) return true;
        if (err.tag != THROTTLED or retries >= THROTTLE_RETRIES) return false;
        retries += 1;
        log(.debug, "{s}: throttled ({s}); retry {d} of {d} in {d} ms", .{ what, message(err), retries, THROTTLE_RETRIES, backoff });
        c.wasmonkey_chaos_types_cloud_error_free(err);
        c.wasmonkey_chaos_runtime_sleep_ms(backoff);
        backoff = std.math.mul(u64, backoff, 2) catch std.math.maxInt(u64);
    }
}

// -- parameters ------------------------------------------------------------------

const KINDS = [_][]const u8{ "text", "integer", "number", "flag" };

const Invalid = error{Invalid};

fn invalid(err: *RunError, name: []const u8, comptime fmt: []const u8, args: anytype) Invalid {
    const text = print(fmt, args);
    defer gpa.free(text);
    const full = print("{s}: {s}", .{ name, text });
    defer gpa.free(full);
    err.tag = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_INVALID_PARAM;
    err.val.invalid_param = own(full);
    return error.Invalid;
}

fn get(params: *const Params, name: []const u8, err: *RunError) Invalid!*const ParamValue {
    for (items(c.exports_wasmonkey_chaos_strategy_param_t, params.ptr, params.len)) |*param| {
        if (std.mem.eql(u8, bytes(param.name), name)) return &param.value;
    }
    return invalid(err, name, "missing", .{});
}

fn textParam(params: *const Params, name: []const u8, err: *RunError) Invalid![]const u8 {
    const value = try get(params, name, err);
    if (value.tag != TEXT) return invalid(err, name, "expected text, got {s}", .{KINDS[value.tag]});
    return bytes(value.val.text);
}

fn integerAtLeast(params: *const Params, name: []const u8, least: i64, err: *RunError) Invalid!u64 {
    const value = try get(params, name, err);
    if (value.tag != INTEGER) return invalid(err, name, "expected integer, got {s}", .{KINDS[value.tag]});
    const x = value.val.integer;
    if (x < least) return invalid(err, name, "must be at least {d}, got {d}", .{ least, x });
    return @intCast(x);
}

fn numberWithin(params: *const Params, name: []const u8, low: f64, high: f64, err: *RunError) Invalid!f64 {
    const value = try get(params, name, err);
    const x: f64 = switch (value.tag) {
        NUMBER => value.val.number,
        INTEGER => @floatFromInt(value.val.integer),
        else => return invalid(err, name, "expected number, got {s}", .{KINDS[value.tag]}),
    };
    if (!(x >= low and x <= high)) return invalid(err, name, "must be between {d} and {d}, got {d}", .{ low, high, x });
    return x;
}

fn spec(name: []const u8, description: []const u8, value: ParamValue) ParamSpec {
    return .{ .name = own(name), .description = own(description), .default_ = value };
}

// -- randomness ------------------------------------------------------------------

/// A uniform index in `0..len` by rejection sampling, as the Rust SDK.
fn index(len: usize) ?usize {
    if (len == 0) return null;
    const n: u64 = len;
    const max = std.math.maxInt(u64);
    const limit = max - (max % n);
    while (true) {
        const draw = c.wasmonkey_chaos_runtime_random_u64();
        if (draw < limit) return @intCast(draw % n);
    }
}

/// A uniform number in [0, 1) from the top 53 bits of one draw.
fn unit() f64 {
    const draw = c.wasmonkey_chaos_runtime_random_u64() >> 11;
    return @as(f64, @floatFromInt(draw)) / 9007199254740992.0;
}

/// True with probability p; always one draw.
fn chance(p: f64) bool {
    return unit() < std.math.clamp(p, 0.0, 1.0);
}

// -- wording ---------------------------------------------------------------------

/// Milliseconds as seconds with one decimal, exactly as Rust's `{:.1}` prints
/// `ms as f64 / 1000.0`: the double rounded to nearest, ties to even.
fn seconds(ms: u64) []u8 {
    const v = @as(f64, @floatFromInt(ms)) / 1000.0;
    var tenths = ms / 100;
    const rest = ms % 100;
    if (rest > 50) {
        tenths += 1;
    } else if (rest == 50) {
        // The decimal is a tie; the double lies above, below or on it.
        const residual = @mulAdd(f64, v, 1000.0, -@as(f64, @floatFromInt(ms)));
        if (residual > 0 or (residual == 0 and tenths % 2 == 1)) tenths += 1;
    }
    return print("{d}.{d} s", .{ tenths / 10, tenths % 10 });
}

fn plural(count: usize, noun: []const u8) []u8 {
    if (count == 1) return print("1 {s}", .{noun});
    return print("{d} {s}s", .{ count, noun });
}

fn victimLine(v: *const Victim) []u8 {
    const group = if (v.group.is_some) bytes(v.group.val) else "no group";
    var fate_buf: ?[]u8 = null;
    defer if (fate_buf) |f| gpa.free(f);
    const fate: []const u8 = switch (v.verdict) {
        RECOVERED => if (v.recovered_at_ms.is_some) blk: {
            const at = v.recovered_at_ms.val;
            const took = seconds(if (at > v.terminated_at_ms) at - v.terminated_at_ms else 0);
            defer gpa.free(took);
            fate_buf = print("recovered in {s}", .{took});
            break :blk fate_buf.?;
        } else "recovered",
        NOT_RECOVERED => "did not recover in time",
        else => if (v.dry_run) "dry run, not terminated" else "recovery not checked",
    };
    return print("{s} ({s}, {s}): {s}", .{ bytes(v.instance_id), group, bytes(v.zone), fate });
}

fn terminated(victims: []const Victim) []u8 {
    var dry: usize = 0;
    for (victims) |v| dry += @intFromBool(v.dry_run);
    const all = plural(victims.len, "instance");
    defer gpa.free(all);
    if (dry == 0) return print("Terminated {s}", .{all});
    if (dry == victims.len) return print("Would have terminated {s} (dry run)", .{all});
    return print("Terminated {s} ({d} only in dry run)", .{ all, dry });
}

fn verdicts(victims: []const Victim) []u8 {
    const cases = [_]struct { verdict: u8, what: []const u8 }{
        .{ .verdict = RECOVERED, .what = "recovered" },
        .{ .verdict = NOT_RECOVERED, .what = "did not recover in time" },
        .{ .verdict = UNCHECKED, .what = "not checked" },
    };
    var out: []u8 = print("", .{});
    for (cases) |case| {
        var n: usize = 0;
        for (victims) |v| n += @intFromBool(!v.dry_run and v.verdict == case.verdict);
        if (n == 0) continue;
        const next = if (out.len == 0)
            print("{d} {s}", .{ n, case.what })
        else
            print("{s}, {d} {s}", .{ out, n, case.what });
        gpa.free(out);
        out = next;
    }
    return out;
}

fn summary(victims: []const Victim, context: []const u8) []u8 {
    const done = terminated(victims);
    defer gpa.free(done);
    const fates = verdicts(victims);
    defer gpa.free(fates);
    return print("{s}{s}{s}{s}{s}.", .{
        done,
        if (context.len > 0) " " else "",
        context,
        if (fates.len > 0) "; " else "",
        fates,
    });
}

// -- the fleet -------------------------------------------------------------------

fn byName(_: void, a: Group, b: Group) bool {
    return lessThan(bytes(a.name), bytes(b.name));
}

fn byId(_: void, a: Instance, b: Instance) bool {
    return lessThan(bytes(a.id), bytes(b.id));
}

/// The groups in scope whose names match `glob`, sorted by name.
fn selectGroups(glob: []const u8, out: *c.wasmonkey_chaos_cloud_list_group_t, err: *CloudError) bool {
    var pattern = borrow(glob);
    const all = glob.len == 0 or std.mem.eql(u8, glob, "*");
    const arg: [*c]String = if (all) null else &pattern;
    if (!retryThrottled("listing groups", c.wasmonkey_chaos_cloud_list_groups, .{ arg, out, err }, err)) return false;
    std.mem.sort(Group, items(Group, out.ptr, out.len), {}, byName);
    return true;
}

/// Running instances of the groups matching `glob`, sorted by id.
fn runningGroupInstances(glob: []const u8, out: *c.wasmonkey_chaos_cloud_list_instance_t, err: *CloudError) bool {
    var running: u8 = RUNNING;
    var filter = c.wasmonkey_chaos_cloud_instance_filter_t{
        .group_pattern = .{ .is_some = true, .val = borrow(if (glob.len == 0) "*" else glob) },
        .tags = .{ .ptr = null, .len = 0 },
        .zone = .{ .is_some = false },
        .states = .{ .ptr = &running, .len = 1 },
    };
    if (!retryThrottled("listing instances", c.wasmonkey_chaos_cloud_list_instances, .{ &filter, out, err }, err)) return false;
    var kept: usize = 0;
    const all = items(Instance, out.ptr, out.len);
    for (all) |*instance| {
        if (instance.group.is_some and instance.state == RUNNING) {
            all[kept] = instance.*;
            kept += 1;
        } else {
            c.wasmonkey_chaos_types_instance_free(instance);
        }
    }
    out.len = kept;
    std.mem.sort(Instance, all[0..kept], {}, byId);
    return true;
}

fn inServiceHealthy(i: *const Instance) bool {
    return i.lifecycle.is_some and i.lifecycle.val == IN_SERVICE and i.healthy;
}

// -- recovery --------------------------------------------------------------------

/// A group being waited for, and its victims still in service.
const Watch = struct {
    name: []const u8,
    ids: std.ArrayList([]const u8) = .empty,
    pending: bool = true,
    at: ?u64 = null,

    fn order(_: void, a: Watch, b: Watch) bool {
        return lessThan(a.name, b.name);
    }
};

fn isRecovered(h: *const c.wasmonkey_chaos_types_group_capacity_t) bool {
    return h.in_service == h.desired and h.pending == 0 and h.terminating == 0 and h.unhealthy == 0;
}

/// Whether an instance has left service (or can no longer be seen).
fn outOfService(id: []const u8) bool {
    var arg = borrow(id);
    var instance: Instance = undefined;
    var err: CloudError = undefined;
    if (!c.wasmonkey_chaos_probe_describe_instance(&arg, &instance, &err)) {
        // Throttled or failing: look again at the next check; gone or not ours: out.
        const transient = err.tag == THROTTLED or err.tag == BACKEND;
        c.wasmonkey_chaos_types_cloud_error_free(&err);
        return !transient;
    }
    defer c.wasmonkey_chaos_types_instance_free(&instance);
    const running = instance.state == PENDING or instance.state == RUNNING;
    const serving = instance.lifecycle.is_some and
        (instance.lifecycle.val == LIFECYCLE_PENDING or instance.lifecycle.val == IN_SERVICE);
    return !(running and serving);
}

fn pendingNames(watch: []const Watch) []u8 {
    var names: std.ArrayList([]const u8) = .empty;
    defer names.deinit(gpa);
    for (watch) |w| if (w.pending) names.append(gpa, w.name) catch @panic("out of memory");
    return std.mem.join(gpa, ", ", names.items) catch @panic("out of memory");
}

/// Wait for each group (sorted by name), and its victims to leave service.
fn waitFor(watch: []Watch, timeout_ms: u64, poll_ms: u64) void {
    const started = c.wasmonkey_chaos_runtime_now_ms();
    const deadline = std.math.add(u64, started, timeout_ms) catch std.math.maxInt(u64);
    const limit = seconds(timeout_ms);
    defer gpa.free(limit);
    {
        const names = pendingNames(watch);
        defer gpa.free(names);
        log(.info, "waiting up to {s} for {s} to recover", .{ limit, names });
    }
    while (true) {
        var left: usize = 0;
        for (watch) |*w| {
            if (!w.pending) continue;
            var kept: usize = 0;
            for (w.ids.items) |id| {
                if (!outOfService(id)) {
                    w.ids.items[kept] = id;
                    kept += 1;
                }
            }
            w.ids.shrinkRetainingCapacity(kept);
            var group = borrow(w.name);
            var health: c.wasmonkey_chaos_probe_group_capacity_t = undefined;
            var err: CloudError = undefined;
            if (c.wasmonkey_chaos_probe_group_health(&group, &health, &err)) {
                defer c.wasmonkey_chaos_types_group_capacity_free(&health);
                if (kept == 0 and isRecovered(&health)) {
                    const at = c.wasmonkey_chaos_runtime_now_ms();
                    const took = seconds(if (at > started) at - started else 0);
                    defer gpa.free(took);
                    log(.info, "{s} recovered after {s}", .{ w.name, took });
                    w.at = at;
                    w.pending = false;
                }
            } else {
                defer c.wasmonkey_chaos_types_cloud_error_free(&err);
                const why = describe(&err);
                defer gpa.free(why);
                if (err.tag == THROTTLED or err.tag == BACKEND) {
                    log(.debug, "checking {s}: {s}; will retry", .{ w.name, why });
                } else {
                    log(.warn, "cannot check {s}: {s}; giving up on it", .{ w.name, why });
                    w.pending = false;
                }
            }
            left += @intFromBool(w.pending);
        }
        if (left == 0) break;
        const now = c.wasmonkey_chaos_runtime_now_ms();
        if (now >= deadline) {
            const names = pendingNames(watch);
            defer gpa.free(names);
            log(.warn, "{s} did not recover within {s}", .{ names, limit });
            break;
        }
        c.wasmonkey_chaos_runtime_sleep_ms(@min(@max(poll_ms, 1), deadline - now));
    }
}

/// Set each victim's verdict by waiting for its group to recover.
fn settle(victims: []Victim, timeout_ms: u64, poll_ms: u64) void {
    var watch: std.ArrayList(Watch) = .empty;
    defer {
        for (watch.items) |*w| w.ids.deinit(gpa);
        watch.deinit(gpa);
    }
    for (victims) |*v| {
        v.verdict = UNCHECKED;
        v.recovered_at_ms.is_some = false;
        if (!v.group.is_some or v.dry_run) continue;
        const name = bytes(v.group.val);
        const w = for (watch.items) |*w| {
            if (std.mem.eql(u8, w.name, name)) break w;
        } else blk: {
            watch.append(gpa, .{ .name = name }) catch @panic("out of memory");
            break :blk &watch.items[watch.items.len - 1];
        };
        w.ids.append(gpa, bytes(v.instance_id)) catch @panic("out of memory");
    }
    if (watch.items.len == 0) return;
    std.mem.sort(Watch, watch.items, {}, Watch.order);
    waitFor(watch.items, timeout_ms, poll_ms);
    for (victims) |*v| {
        if (v.dry_run or !v.group.is_some) continue;
        for (watch.items) |w| {
            if (!std.mem.eql(u8, w.name, bytes(v.group.val))) continue;
            if (w.at) |at| {
                v.verdict = RECOVERED;
                v.recovered_at_ms = .{ .is_some = true, .val = at };
            } else {
                v.verdict = NOT_RECOVERED;
            }
        }
    }
}

// -- the strategy ----------------------------------------------------------------

/// Publish the victims' fates; a failure is logged, never fatal.
fn announce(channel_param: []const u8, victims: []const Victim) void {
    if (victims.len == 0) {
        log(.info, "no victim: no notification", .{});
        return;
    }
    var granted: c.strategy_plugin_list_string_t = .{ .ptr = null, .len = 0 };
    defer c.strategy_plugin_list_string_free(&granted);
    var channel = channel_param;
    if (channel.len == 0) {
        c.wasmonkey_chaos_notify_channels(&granted);
        if (granted.len == 0) {
            log(.info, "no notification channel granted: not notifying", .{});
            return;
        }
        channel = bytes(items(String, granted.ptr, granted.len)[0]);
    }
    const done = terminated(victims);
    defer gpa.free(done);
    const subject_text = print("{s}: {s}", .{ NAME, done });
    defer gpa.free(subject_text);
    var lines: std.ArrayList([]const u8) = .empty;
    defer {
        for (lines.items) |line| gpa.free(line);
        lines.deinit(gpa);
    }
    for (victims) |*v| lines.append(gpa, victimLine(v)) catch @panic("out of memory");
    const body_text = std.mem.join(gpa, "\n", lines.items) catch @panic("out of memory");
    defer gpa.free(body_text);
    var ch = borrow(channel);
    var subject = borrow(subject_text);
    var body = borrow(body_text);
    var err: CloudError = undefined;
    if (!c.wasmonkey_chaos_notify_publish(&ch, &subject, &body, &err)) {
        defer c.wasmonkey_chaos_types_cloud_error_free(&err);
        const why = describe(&err);
        defer gpa.free(why);
        log(.warn, "publishing to {s} failed: {s}", .{ channel, why });
    }
}

fn experiment(params: *const Params, ret: *Outcome, err: *RunError) Invalid!bool {
    const glob = try textParam(params, "groups", err);
    const probability = try numberWithin(params, "probability", 0.0, 1.0, err);
    const timeout_s = try integerAtLeast(params, "recovery-timeout-secs", 0, err);
    const poll_s = try integerAtLeast(params, "poll-secs", 1, err);
    const channel = try textParam(params, "channel", err);
    const timeout_ms = std.math.mul(u64, timeout_s, 1000) catch std.math.maxInt(u64);
    const poll_ms = std.math.mul(u64, poll_s, 1000) catch std.math.maxInt(u64);

    var groups: c.wasmonkey_chaos_cloud_list_group_t = undefined;
    var instances: c.wasmonkey_chaos_cloud_list_instance_t = undefined;
    var cloud_err: CloudError = undefined;
    if (!selectGroups(glob, &groups, &cloud_err)) return failed(err, cloud_err);
    defer c.wasmonkey_chaos_cloud_list_group_free(&groups);
    if (!runningGroupInstances(glob, &instances, &cloud_err)) return failed(err, cloud_err);
    defer c.wasmonkey_chaos_cloud_list_instance_free(&instances);

    // At most one victim a group; the bindings free this array after the call.
    const room = @max(groups.len, 1);
    const raw = std.c.malloc(room * @sizeOf(Victim)) orelse @panic("out of memory");
    const victims: [*]Victim = @ptrCast(@alignCast(raw));
    var count: usize = 0;
    var eligible: usize = 0;
    var pool: std.ArrayList(*const Instance) = .empty;
    defer pool.deinit(gpa);
    for (items(Group, groups.ptr, groups.len)) |*group| {
        const name = bytes(group.name);
        pool.clearRetainingCapacity();
        for (items(Instance, instances.ptr, instances.len)) |*instance| {
            if (std.mem.eql(u8, bytes(instance.group.val), name) and inServiceHealthy(instance)) {
                pool.append(gpa, instance) catch @panic("out of memory");
            }
        }
        if (pool.items.len == 0) {
            log(.info, "{s}: no running, in-service, healthy instance", .{name});
            continue;
        }
        eligible += 1;
        if (!chance(probability)) {
            log(.info, "{s}: spared this time", .{name});
            continue;
        }
        const picked = index(pool.items.len) orelse continue;
        const id = bytes(pool.items[picked].id);
        const reason_text = print("{s}: random victim in {s}", .{ NAME, name });
        defer gpa.free(reason_text);
        const what = print("terminating {s}", .{id});
        defer gpa.free(what);
        var id_arg = borrow(id);
        var reason = borrow(reason_text);
        var done: c.wasmonkey_chaos_cloud_termination_t = undefined;
        var refused: CloudError = undefined;
        if (!retryThrottled(what, c.wasmonkey_chaos_cloud_terminate, .{ &id_arg, &reason, &done, &refused }, &refused)) {
            defer c.wasmonkey_chaos_types_cloud_error_free(&refused);
            const why = describe(&refused);
            defer gpa.free(why);
            if (refused.tag == BUDGET_EXHAUSTED) {
                log(.info, "not terminating {s}: {s}; stopping", .{ id, why });
                break;
            } else if (refused.tag == BACKEND) {
                log(.err, "terminating {s} failed: {s}; skipping it", .{ id, why });
            } else {
                log(.warn, "not terminating {s}: {s}; skipping it", .{ id, why });
            }
            continue;
        }
        log(.info, "{s}: terminated {s}{s}", .{ name, id, if (done.dry_run) " (dry run)" else "" });
        // The termination's strings move into the victim.
        victims[count] = .{
            .instance_id = done.instance_id,
            .group = done.group,
            .zone = done.zone,
            .terminated_at_ms = done.at_ms,
            .dry_run = done.dry_run,
            .verdict = UNCHECKED,
            .recovered_at_ms = .{ .is_some = false },
        };
        count += 1;
    }

    settle(victims[0..count], timeout_ms, poll_ms);
    announce(channel, victims[0..count]);
    const groups_text = plural(groups.len, "group");
    defer gpa.free(groups_text);
    const context = print("across {d} eligible of {s} matching \"{s}\"", .{ eligible, groups_text, glob });
    defer gpa.free(context);
    const text = summary(victims[0..count], context);
    defer gpa.free(text);
    ret.* = .{ .victims = .{ .ptr = victims, .len = count }, .summary = own(text) };
    return true;
}

/// A cloud error that ends the run becomes run-error.cloud (it moves).
fn failed(err: *RunError, cloud_err: CloudError) bool {
    err.tag = c.EXPORTS_WASMONKEY_CHAOS_STRATEGY_RUN_ERROR_CLOUD;
    err.val.cloud = cloud_err;
    return false;
}

export fn exports_wasmonkey_chaos_strategy_metadata(ret: *c.exports_wasmonkey_chaos_strategy_plugin_metadata_t) void {
    const count = 5;
    const raw = std.c.malloc(count * @sizeOf(ParamSpec)) orelse @panic("out of memory");
    const specs: [*]ParamSpec = @ptrCast(@alignCast(raw));
    specs[0] = spec("groups", "Glob over the names of the Auto Scaling groups to act on (`*`, `?`, `[ab]`)", .{ .tag = TEXT, .val = .{ .text = own("*") } });
    specs[1] = spec("probability", "Chance, from 0 to 1, that each eligible group loses an instance", .{ .tag = NUMBER, .val = .{ .number = 1.0 } });
    specs[2] = spec("recovery-timeout-secs", "How long to wait for the affected groups to recover, in seconds", .{ .tag = INTEGER, .val = .{ .integer = 900 } });
    specs[3] = spec("poll-secs", "How often to check whether the affected groups recovered, in seconds", .{ .tag = INTEGER, .val = .{ .integer = 5 } });
    specs[4] = spec("channel", "Notification channel alias; empty means the first granted channel, if any", .{ .tag = TEXT, .val = .{ .text = own("") } });
    ret.* = .{
        .name = own(NAME),
        .version = own(VERSION),
        .description = own(DESCRIPTION),
        .params = .{ .ptr = specs, .len = count },
    };
}

export fn exports_wasmonkey_chaos_strategy_run(params: *Params, ret: *Outcome, err: *RunError) bool {
    defer c.exports_wasmonkey_chaos_strategy_list_param_free(params);
    return experiment(params, ret, err) catch false;
}
