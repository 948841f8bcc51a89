import Foundation
import LabCore
import LabStorage

/// One experiment of a campaign as its plot shows it.
struct PlottedExperiment {
    let number: Int
    let record: RunRecord
    /// The objective as the run computed it; nil when the run gave no result (failed, stopped, no such output).
    let objective: Double?
}

extension RunPlots {
    /// Who chose an experiment, as the legend groups it (the stored `chosen_by` says more, in the marker's tooltip).
    enum Chooser: String, CaseIterable {
        case initialDesign = "initial design", planner, sweep, user

        init(_ chosenBy: String) {
            self = chosenBy.hasPrefix("initial design") ? .initialDesign
                : chosenBy.hasPrefix("planner") || chosenBy.hasPrefix("random") ? .planner
                : chosenBy.hasPrefix("sweep") ? .sweep : .user
        }

        /// The marker's shape; `content` (a tooltip) goes inside the element.
        func marker(x: Double, y: Double, plot: SVGPlot, attributes: String, content: String = "") -> String {
            let (cx, cy) = (plot.n(x), plot.n(y))
            let (element, shape) = switch self {
            case .initialDesign: ("circle", ##"cx="\##(cx)" cy="\##(cy)" r="5" fill="white" stroke="\##(blue)" stroke-width="2""##)
            case .planner: ("circle", ##"cx="\##(cx)" cy="\##(cy)" r="5" fill="\##(blue)""##)
            case .sweep: ("path", ##"d="M\##(cx),\##(plot.n(y - 6)) l6,6 l-6,6 l-6,-6 z" fill="#6a1b9a""##)
            case .user: ("rect", ##"x="\##(plot.n(x - 5))" y="\##(plot.n(y - 5))" width="10" height="10" fill="#ef6c00""##)
            }
            return "<\(element) \(shape) \(attributes)" + (content.isEmpty ? "/>" : ">\(content)</\(element)>")
        }
    }

    static let failedColor = "#c62828"

    static func campaign(_ id: Int64, in database: LabDatabase, data: DataDirectory) throws -> String {
        guard let objective = try database.objective(campaign: id) else {
            throw LabError(.notFound, "no campaign \(id) in \(data.path) (serendip campaign list shows them)")
        }
        guard let output = objective.output else {
            throw LabError(.conflict, "campaign \(id) (\(objective.name)) is a sweep: it has no objective to plot; "
                + "plot one of its runs instead (serendip plot RUN --channel C)")
        }
        // Numbered as the campaign reported them, in the order they ended (runs at once end out of order);
        // a run not ended yet comes last.
        let runs = try database.runs(matching: RunFilter(campaign: id)).sorted { ($0.endedAt ?? "~", $0.id) < ($1.endedAt ?? "~", $1.id) }
        let experiments = try runs.enumerated().map { i, run in
            guard let record = try database.detail(run: run.id) else { throw LabError(.notFound, "run \(run.id) vanished while read") }
            let value = record.run.state == "completed" ? record.outputs.first { $0.name == output }?.value : nil
            return PlottedExperiment(number: i + 1, record: record, objective: value)
        }
        guard !experiments.isEmpty else { throw LabError(.notFound, "campaign \(id) (\(objective.name)) has no runs yet") }
        let results = experiments.compactMap(\.objective)
        let better: (Double, Double) -> Bool = objective.maximize ? { $0 > $1 } : { $0 < $1 }

        let x = NiceScale(0.5, Double(experiments.count) + 0.5, count: 10, expand: false, minimumStep: 1)
        let y = NiceScale(results.min() ?? 0, results.max() ?? 1, count: 7)
        let failed = experiments.count - results.count
        var plot = SVGPlot(x: x, y: y, strip: failed > 0 ? 28 : 0)
        if failed > 0 {
            plot.add(##"<line x1="\##(plot.n(plot.left))" y1="\##(plot.n(plot.bottom))" x2="\##(plot.n(plot.right))" y2="\##(plot.n(plot.bottom))" stroke="#bbb" stroke-dasharray="3 3"/>"##)
            plot.add(plot.text("no result", x: plot.left - 8, y: plot.bottom + 18, size: 11.5, attributes: ##"text-anchor="end" fill="\##(failedColor)""##))
        }

        // Best so far: a step line from the first result to the last experiment.
        var best: PlottedExperiment?
        var steps: [(Double, Double)] = []
        for e in experiments {
            guard let value = e.objective, best.map({ better(value, $0.objective!) }) ?? true else { continue }
            if let previous = best { steps.append((plot.px(Double(e.number)), plot.py(previous.objective!))) }
            steps.append((plot.px(Double(e.number)), plot.py(value)))
            best = e
        }
        if let best { steps.append((plot.px(Double(experiments.count)), plot.py(best.objective!))) }
        if !steps.isEmpty {
            plot.add(##"<polyline class="best" fill="none" stroke="#2e7d32" stroke-width="2" points="\##(steps.map { plot.n($0.0) + "," + plot.n($0.1) }.joined(separator: " "))"/>"##)
        }
        for e in experiments {
            let r = e.record.run
            let tip = "<title>\(SVGPlot.escape("experiment \(e.number): run \(r.id), \(r.state), chosen by \(r.chosenBy)"))</title>"
            if let value = e.objective {
                plot.add(Chooser(r.chosenBy).marker(x: plot.px(Double(e.number)), y: plot.py(value), plot: plot,
                                                    attributes: ##"class="point" data-run="\##(r.id)""##, content: tip))
            } else {
                // No result: a cross in the strip on the x axis, so that the failure is seen, not silently dropped.
                let (fx, fy) = (plot.px(Double(e.number)), plot.bottom + plot.strip / 2)
                plot.add(##"<path class="failed" data-run="\##(r.id)" d="M\##(plot.n(fx - 6)),\##(plot.n(fy - 6)) l12,12 m0,-12 l-12,12" stroke="\##(failedColor)" stroke-width="2.5">\##(tip)</path>"##)
            }
        }

        let unit = experiments.lazy.compactMap { $0.record.outputs.first { $0.name == output }?.unit }.first ?? ""
        let unitText = SVGPlot.unitLabel(unit)
        let caption = best.map { b in
            let parameters = b.record.parameters.map { p in
                p.text.map { "\(p.name) = \($0)" }
                    ?? "\(p.name) = \(compact(p.value ?? .nan))" + (SVGPlot.unitLabel(p.unit).map { " \($0)" } ?? "")
            }
            return "Best: run \(b.record.run.id) (experiment \(b.number)), \(output) = \(compact(b.objective!))"
                + (unitText.map { " \($0)" } ?? "") + (parameters.isEmpty ? "" : ", at " + parameters.joined(separator: ", "))
        } ?? "No run gave a result yet."
        return plot.render(title: "Campaign \(id) · \(objective.name) · \(objective.maximize ? "maximize" : "minimize") \(output)",
                           subtitle: "\(experiments.count) experiments, \(results.count) with a result"
                               + (failed > 0 ? ", \(failed) without (× under the plot)" : ""),
                           xLabel: "experiment", yLabel: output + (unitText.map { " (\($0))" } ?? " (no unit)"),
                           legend: legend(experiments, plot: plot, failed: failed > 0),
                           footer: SVGPlot.wrap(caption, width: plot.right - plot.left, size: 12.5))
    }

    /// The choosers present, the failure cross and the best-so-far line, in one row under the title.
    static func legend(_ experiments: [PlottedExperiment], plot: SVGPlot, failed: Bool) -> [String] {
        let present = Set(experiments.filter { $0.objective != nil }.map { Chooser($0.record.run.chosenBy) })
        var keyX = plot.left + 6, items: [String] = []
        func label(_ text: String) {
            items.append(plot.text(text, x: keyX + 12, y: 66, size: 11.5, attributes: ##"fill="#333""##))
            keyX += 12 + SVGPlot.textWidth(text, size: 11.5) + 22
        }
        for chooser in Chooser.allCases where present.contains(chooser) {
            items.append(chooser.marker(x: keyX, y: 62, plot: plot, attributes: ##"class="legend""##))
            label(chooser.rawValue)
        }
        if failed {
            items.append(##"<path class="legend" d="M\##(plot.n(keyX - 5)),57 l10,10 m0,-10 l-10,10" stroke="\##(failedColor)" stroke-width="2.5"/>"##)
            label("no result")
        }
        items.append(##"<line class="legend" x1="\##(plot.n(keyX - 8))" y1="62" x2="\##(plot.n(keyX + 8))" y2="62" stroke="#2e7d32" stroke-width="2"/>"##)
        label("best so far")
        return items
    }
}
