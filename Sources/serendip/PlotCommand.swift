import ArgumentParser
import Foundation
import LabCore
import LabStorage

/// `serendip plot`: a run's channel over time, or a campaign's objective per experiment, as an SVG file.
struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw a run's channel over time, or a campaign's objective per experiment, as an SVG file.",
        discussion: """
            serendip plot RUN --channel C --out FILE.svg: the readings of one series (a channel such as \
            reactor.temperature, or a measure's `as:` name such as absorbance) against the time since the run \
            started, with the run's events (commands, checkpoints, transitions, faults) as thin vertical lines. \
            serendip plot --campaign N --out FILE.svg: the campaign's objective per experiment, marked by who chose \
            each point, with the best-so-far line and the best run's parameters; failed runs are crosses on the axis.
            """)

    @Argument(help: ArgumentHelp("The run to plot (serendip runs lists them).", valueName: "run")) var number: Int64?
    @Option(help: ArgumentHelp("The series to plot: a channel (reactor.temperature) or an `as:` name (absorbance).", valueName: "C"))
    var channel: String?
    @Option(help: ArgumentHelp("Plot this campaign's objective instead of one run.", valueName: "N")) var campaign: Int64?
    @Option(help: ArgumentHelp("The SVG file to write.", valueName: "FILE.svg")) var out: String
    @OptionGroup var data: DataDirectory

    func validate() throws {
        if (number == nil) == (campaign == nil) { throw ValidationError("say what to plot: a run number, or --campaign N (not both)") }
        if number != nil && channel == nil { throw ValidationError("say which series of the run to plot: --channel C (serendip show RUN lists them)") }
        if campaign != nil && channel != nil { throw ValidationError("--channel is for a run's plot; a campaign's plot shows its objective") }
        // SVG text under a .png name opens as a broken image.
        let suffix = (out as NSString).pathExtension.lowercased()
        if ["png", "jpg", "jpeg", "pdf", "gif"].contains(suffix) {
            throw ValidationError("--out \(out): plot writes SVG; name the file .svg and convert it (rsvg-convert -o plot.\(suffix) plot.svg)")
        }
    }

    func run() throws {
        do {
            let database = try data.openDatabase()
            // Everything is read and drawn before the file is opened: a mistake leaves no file behind.
            let svg = if let campaign { try RunPlots.campaign(campaign, in: database, data: data) }
                      else { try RunPlots.run(number!, channel: channel!, in: database, data: data) }
            let sink = try ByteSink(path: out)
            try sink.write(svg)
            try sink.close()
        } catch { throw data.fail(error) }
    }
}

/// The two plots, from the stored data to SVG text.
enum RunPlots {
    static let blue = "#1f5fa8"

    static func run(_ id: Int64, channel: String, in database: LabDatabase, data: DataDirectory) throws -> String {
        guard let detail = try database.detail(run: id) else { throw data.noRun(id) }
        guard let trace = try database.trace(run: id, named: channel) else {
            let has = detail.series.map { $0.series + (SVGPlot.unitLabel($0.unit).map { " (\($0))" } ?? "") }
            throw LabError(.unknownReference, "run \(id) has no channel '\(channel)'; "
                + (has.isEmpty ? "it has no readings" : "it has: " + has.joined(separator: ", ")))
        }
        let allEvents = try database.timeline(run: id)
        // The whole run, unless the readings would fill less than a quarter of it (a few readings at the
        // end): then just their time span, with the events inside it.
        let (first, last) = (trace.times.min() ?? 0, trace.times.max() ?? 0)
        let end = max(last, allEvents.map(\.time).max() ?? 0)
        let whole = last - first >= end / 4
        // Seconds up to 3 minutes, minutes up to 3 hours, hours beyond.
        let (divisor, timeUnit) = end <= 180 ? (1.0, "s") : end <= 3 * 3600 ? (60.0, "min") : (3600.0, "h")
        let x = whole ? NiceScale(0, max(end / divisor, 1e-9), count: 9) : NiceScale(first / divisor, last / divisor, count: 9)
        let events = allEvents.filter { whole || (x.lo...x.hi).contains($0.time / divisor) }
        let y = NiceScale(trace.values.min() ?? 0, trace.values.max() ?? 1, count: 7)
        // The labels are laid out along x first: their rows decide how high the header is.
        let layout = SVGPlot(x: x, y: y)
        let labels = placeEventLabels(eventGroups(events, at: { layout.px($0.time / divisor) }), at: { $0.time / divisor }, in: layout)
        // Above the plot area, one 15-pixel row per lane of event labels, so that no label hides the data.
        var plot = SVGPlot(x: x, y: y, header: 80 + Double(labels.lanes) * 15)
        let points = zip(trace.times, trace.values).map { (plot.px($0 / divisor), plot.py($1)) }

        // Events first, so that the data is drawn over their lines.
        var legend: [String: String] = [:]
        for placed in labels.placed {
            for event in placed.group {
                let ex = plot.px(event.time / divisor), color = eventColor(event.kind)
                legend[event.kind] = color
                plot.add(##"<line class="event" data-kind="\##(event.kind)" x1="\##(plot.n(ex))" y1="\##(plot.n(plot.top))" x2="\##(plot.n(ex))" y2="\##(plot.n(plot.bottom))" stroke="\##(color)" stroke-width="1" stroke-dasharray="4 3"/>"##)
            }
            guard let lane = placed.lane else { continue }
            let gx = plot.px(placed.group[0].time / divisor), gy = plot.top - 5 - 15 * Double(lane), color = eventColor(placed.group[0].kind)
            plot.add(##"<line x1="\##(plot.n(gx))" y1="\##(plot.n(gy - 9))" x2="\##(plot.n(gx))" y2="\##(plot.n(plot.top))" stroke="\##(color)" stroke-width="1"/>"##)
            let anchor = placed.leftOfLine ? ##"text-anchor="end" "## : ""
            plot.add(plot.text(placed.label, x: gx + (placed.leftOfLine ? -3 : 3), y: gy, size: 11,
                               attributes: ##"class="event-label" \##(anchor)fill="\##(color)" stroke="white" stroke-width="3" paint-order="stroke""##))
        }
        plot.add(##"<polyline class="trace" fill="none" stroke="\##(blue)" stroke-width="1.8" stroke-linejoin="round" points="\##(points.map { plot.n($0.0) + "," + plot.n($0.1) }.joined(separator: " "))"/>"##)
        // Markers only where they can be told apart: a few readings, not a dense record.
        if points.count <= 150 {
            for (px, py) in points { plot.add(##"<circle class="point" cx="\##(plot.n(px))" cy="\##(plot.n(py))" r="3" fill="\##(blue)"/>"##) }
        }

        let r = detail.run
        let unit = SVGPlot.unitLabel(trace.unit).map { " (\($0))" } ?? " (no unit)"
        var keyX = plot.left
        let key = ["command", "checkpoint", "transition", "branch", "log", "annotation", "timing", "safeState", "fault"].compactMap { kind -> String? in
            guard let color = legend[kind] else { return nil }
            defer { keyX += 34 + SVGPlot.textWidth(kind, size: 11.5) + 18 }
            return ##"<g class="legend"><line x1="\##(plot.n(keyX))" y1="62" x2="\##(plot.n(keyX + 26))" y2="62" stroke="\##(color)" stroke-dasharray="4 3"/>"##
                + plot.text(kind, x: keyX + 32, y: 66, size: 11.5, attributes: ##"fill="#333""##) + "</g>"
        }
        return plot.render(title: "Run \(r.id) · \(r.protocolName) · \(r.state)",
                           subtitle: "\(trace.series): \(trace.values.count) readings · started \(r.startedAt) by \(r.operatorName)"
                               + (r.campaign.map { " · campaign \($0)" } ?? ""),
                           xLabel: "time since the run started (\(timeUnit))", yLabel: trace.series + unit, legend: key,
                           footer: events.count < allEvents.count
                               ? ["The axis spans the readings: \(allEvents.count - events.count) of the run's \(allEvents.count) events fall outside it (serendip show \(r.id) counts them)."]
                               : [])
    }

    /// Events less than 15 pixels apart share one label (at the first): lines that close cannot each point at their own.
    static func eventGroups(_ events: [TimedRunEvent], at x: (TimedRunEvent) -> Double) -> [[TimedRunEvent]] {
        var groups: [[TimedRunEvent]] = []
        for event in events.sorted(by: { $0.time < $1.time }) {
            if let first = groups.last?.first, x(event) - x(first) < 15 { groups[groups.count - 1].append(event) }
            else { groups.append([event]) }
        }
        return groups
    }

    struct PlacedLabel {
        let group: [TimedRunEvent]
        let label: String
        /// The label's row above the plot area (0 nearest it); nil when every row is taken there.
        let lane: Int?
        let leftOfLine: Bool
    }

    /// Puts each group's label, left to right, in the lowest row where it overlaps no other label; a
    /// label that would run off the right edge ends at its line instead. At most `maximumLanes` rows:
    /// beyond them a group keeps its lines and loses its label rather than overlap another.
    static func placeEventLabels(_ groups: [[TimedRunEvent]], at time: (TimedRunEvent) -> Double, in plot: SVGPlot,
                                 maximumLanes: Int = 5) -> (placed: [PlacedLabel], lanes: Int) {
        var laneEnds: [Double] = []
        let placed = groups.map { group -> PlacedLabel in
            let full = group.map { rounded(eventLabel($0)) }.joined(separator: "; ")
            let x = plot.px(time(group[0]))
            let (roomRight, roomLeft) = (SVGPlot.width - 8 - x, x - 3 - plot.left)
            let leftOfLine = SVGPlot.textWidth(full, size: 11) > roomRight && roomLeft > roomRight
            let label = shortened(full, to: min(90, Int((leftOfLine ? roomLeft : roomRight) / (11 * 0.6))))
            let width = SVGPlot.textWidth(label, size: 11)
            let start = leftOfLine ? x - 3 - width : x + 3
            let lane = laneEnds.firstIndex { $0 + 8 <= start } ?? (laneEnds.count < maximumLanes ? laneEnds.count : nil)
            if let lane {
                if lane == laneEnds.count { laneEnds.append(0) }
                laneEnds[lane] = start + width
            }
            return PlacedLabel(group: group, label: label, lane: lane, leftOfLine: leftOfLine)
        }
        return (placed, laneEnds.count)
    }

    /// Long decimals (`73.92718048795959`) to four significant digits: a label is for reading; `show` has the exact value.
    static func rounded(_ text: String) -> String {
        text.replacing(/-?\d+\.\d{5,}/) { match in Double(match.output).map(compact) ?? String(match.output) }
    }

    static func compact(_ value: Double) -> String { String(format: "%.4g", value) }

    static func eventColor(_ kind: String) -> String {
        switch kind {
        case "fault", "safeState": "#c62828"
        case "checkpoint": "#2e7d32"
        case "transition": "#e65100"
        case "command": "#607d8b"
        default: "#8e24aa"
        }
    }

    /// A command reads as it was written (`reactor.setpoint = 80.0 degC`); other kinds say theirs first.
    static func eventLabel(_ event: TimedRunEvent) -> String {
        event.kind == "command" ? event.message : event.kind + ": " + event.message
    }

    static func shortened(_ text: String, to length: Int) -> String {
        text.count <= length ? text : String(text.prefix(max(length - 1, 1))) + "…"
    }
}
