// Drawing a simulated timeline: an SVG (rows per rank, a box per compute action, a legend and a
// time axis) and Chrome-trace JSON that chrome://tracing and Perfetto open.
// Not a plotting library: fixed layout, no options beyond the time unit.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "hp/io/file.hpp"
#include "hp/mpmd/simulate.hpp"

namespace hp::mpmd {

namespace {

const char* colour(ActionKind k) {
  switch (k) {
    case ActionKind::kF:
      return "#4e79a7";
    case ActionKind::kB:
      return "#59a14f";
    case ActionKind::kW:
      return "#edc948";
    case ActionKind::kBW:
      return "#f28e2b";
    case ActionKind::kOpt:
      return "#9c9c9c";
    case ActionKind::kRecv:  // a measured timeline's wait for a message
      return "#e15759";
    case ActionKind::kOffload:
      return "#b07aa1";
    case ActionKind::kReload:
      return "#76b7b2";
    default:
      return "#bab0ac";
  }
}

// A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span`.
double tick_step(double span, int target) {
  if (span <= 0) return 1;
  double raw = span / target, p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0})
    if (m * p >= raw) return m * p;
  return 10 * p;
}

std::string num(double x) {
  std::ostringstream os;
  os << std::setprecision(4) << x;
  return os.str();
}

void legend(std::ostringstream& os, const Simulation& sim, double x0) {
  std::map<ActionKind, bool> used;
  for (const auto& row : sim.timeline)
    for (const auto& iv : row) used[iv.action.kind] |= iv.end > iv.start;
  double x = x0;
  for (auto k : {ActionKind::kF, ActionKind::kB, ActionKind::kW, ActionKind::kBW, ActionKind::kOpt,
                 ActionKind::kOffload, ActionKind::kReload, ActionKind::kSend, ActionKind::kRecv}) {
    if (!used[k]) continue;
    os << "<rect x='" << x << "' y='30' width='12' height='12' fill='" << colour(k) << "'/>"
       << "<text x='" << x + 16 << "' y='40'>" << kind_name(k) << "</text>\n";
    x += 28 + 8 * double(kind_name(k).size());
  }
  if (std::any_of(sim.transfers.begin(), sim.transfers.end(),
                  [](const TransferInterval& t) { return t.end > t.start; }))
    os << "<rect x='" << x << "' y='34' width='12' height='4' fill='" << colour(ActionKind::kSend)
       << "'/><text x='" << x + 16 << "' y='40'>transfer</text>\n";
}

}  // namespace

std::string timeline_svg(const Simulation& sim, double span) {
  const double left = 50, top = 56, row = 30, plot_w = 1000;
  size_t ranks = sim.timeline.size();
  if (span <= 0) span = sim.step_time;
  double scale = span > 0 ? plot_w / span : 1;
  double height = top + row * double(ranks) + 40;
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' width='" << left + plot_w + 20 << "' height='"
     << height << "' font-family='sans-serif' font-size='11'>\n"
     << "<rect width='100%' height='100%' fill='white'/>\n"
     << "<text x='" << left << "' y='18' font-size='13'>" << sim.name << ", " << sim.microbatches
     << " micro-batches: step " << num(sim.step_time) << ", bubble " << num(100 * sim.mean_bubble())
     << "% of the step</text>\n";
  legend(os, sim, left);
  for (size_t r = 0; r < ranks; ++r) {
    double y = top + row * double(r);
    os << "<text x='8' y='" << y + 17 << "'>r" << r << "</text>\n";
    for (const auto& iv : sim.timeline[r]) {
      if (iv.end <= iv.start) continue;  // e.g. an optimizer step of no modelled cost
      double x = left + iv.start * scale, w = std::max(0.5, (iv.end - iv.start) * scale);
      os << "<rect x='" << x << "' y='" << y << "' width='" << w << "' height='" << row - 8
         << "' fill='" << colour(iv.action.kind) << "' stroke='white' stroke-width='0.5'>"
         << "<title>" << iv.action.str() << " [" << num(iv.start) << ", " << num(iv.end)
         << ")</title></rect>";
      if (w >= 12 && iv.action.kind != ActionKind::kOpt)
        os << "<text x='" << x + w / 2 << "' y='" << y + 15 << "' text-anchor='middle' "
           << "fill='white'>" << iv.action.microbatch << "</text>";
      os << "\n";
    }
  }
  for (const auto& t : sim.transfers) {
    if (t.end <= t.start) continue;
    double y = top + row * double(t.to) + row - 7;
    os << "<rect x='" << left + t.start * scale << "' y='" << y << "' width='"
       << std::max(0.5, (t.end - t.start) * scale) << "' height='3' fill='"
       << colour(ActionKind::kSend) << "'><title>" << t.send.str() << "</title></rect>\n";
  }
  double axis_y = top + row * double(ranks) + 4, step = tick_step(span, 10);
  os << "<line x1='" << left << "' y1='" << axis_y << "' x2='" << left + plot_w << "' y2='"
     << axis_y << "' stroke='black'/>\n";
  for (double t = 0; t <= span * (1 + 1e-9); t += step) {
    double x = left + t * scale;
    os << "<line x1='" << x << "' y1='" << axis_y << "' x2='" << x << "' y2='" << axis_y + 5
       << "' stroke='black'/><text x='" << x << "' y='" << axis_y + 17 << "' text-anchor='middle'>"
       << num(t) << "</text>\n";
  }
  os << "</svg>\n";
  return os.str();
}

std::string chrome_trace(const Simulation& sim, double us_per_unit) {
  using nlohmann::json;
  json events = json::array();
  for (size_t r = 0; r < sim.timeline.size(); ++r) {
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", 0},
                      {"tid", r},
                      {"args", {{"name", "rank " + std::to_string(r)}}}});
    for (const auto& iv : sim.timeline[r])
      events.push_back({{"name", iv.action.str()},
                        {"cat", kind_name(iv.action.kind)},
                        {"ph", "X"},
                        {"pid", 0},
                        {"tid", r},
                        {"ts", iv.start * us_per_unit},
                        {"dur", (iv.end - iv.start) * us_per_unit}});
  }
  std::map<std::pair<int, int>, size_t> link_tid;
  for (const auto& t : sim.transfers) {
    auto [it, fresh] = link_tid.emplace(std::pair{t.from, t.to}, link_tid.size());
    if (fresh)
      events.push_back(
          {{"name", "thread_name"},
           {"ph", "M"},
           {"pid", 1},
           {"tid", it->second},
           {"args", {{"name", "link r" + std::to_string(t.from) + "->r" + std::to_string(t.to)}}}});
    events.push_back({{"name", t.send.str()},
                      {"cat", "transfer"},
                      {"ph", "X"},
                      {"pid", 1},
                      {"tid", it->second},
                      {"ts", t.start * us_per_unit},
                      {"dur", (t.end - t.start) * us_per_unit}});
  }
  json doc = {{"traceEvents", events}, {"displayTimeUnit", "ms"}};
  return doc.dump(1);
}

void write_timeline_svg(const Simulation& sim, const std::filesystem::path& path, double span) {
  io::write_atomic(path, timeline_svg(sim, span));
}

void write_chrome_trace(const Simulation& sim, const std::filesystem::path& path,
                        double us_per_unit) {
  io::write_atomic(path, chrome_trace(sim, us_per_unit));
}

}  // namespace hp::mpmd
