import Foundation

/// An axis's range and ticks at 1, 2 or 5 times a power of ten, so that tick labels read as round numbers.
struct NiceScale {
    let lo: Double, hi: Double, step: Double
    let ticks: [Double]

    /// `expand`: widen the range to the ticks just outside the data (a y axis); otherwise keep it and
    /// put ticks only inside (an axis of experiment numbers). `minimumStep` keeps integer axes integer.
    init(_ low: Double, _ high: Double, count: Int, expand: Bool = true, minimumStep: Double = 0) {
        var low = low, high = high
        if !(high > low) {
            let pad = low == 0 ? 1 : abs(low) * 0.1
            low -= pad; high += pad
        }
        let raw = (high - low) / Double(max(count - 1, 1))
        let magnitude = pow(10, floor(log10(raw)))
        let step = max([1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - 1e-9) }!, minimumStep)
        self.step = step
        // The small slack keeps a bound that is a tick (up to rounding) from adding an empty tick.
        let first = expand ? floor(low / step + 1e-9) : ceil(low / step - 1e-9)
        let last = expand ? ceil(high / step - 1e-9) : floor(high / step + 1e-9)
        lo = expand ? first * step : low
        hi = expand ? last * step : high
        ticks = first > last ? [] : (Int(first)...Int(last)).map { Double($0) * step }
    }

    func label(_ value: Double) -> String {
        if abs(value) >= 1e6 || (abs(value) < 1e-3 && value != 0) { return String(format: "%g", value) }
        let decimals = max(0, Int(-floor(log10(step) + 1e-9)))
        let text = String(format: "%.\(decimals)f", value)
        return Double(text) == 0 ? String(format: "%.\(decimals)f", 0.0) : text
    }
}

/// An SVG chart of one plot area with two linear axes: frame, grid, ticks and labels here; the marks
/// (lines, points, event markers) are added by the caller in data coordinates.
struct SVGPlot {
    static let width = 880.0
    static let font = "DejaVu Sans, Helvetica, Arial, sans-serif"
    /// A rough advance per character of the sans-serif fonts above, to lay out text without measuring it.
    static func textWidth(_ text: String, size: Double) -> Double { Double(text.count) * size * 0.6 }

    let x: NiceScale, y: NiceScale
    let left = 88.0, right = width - 36
    let top: Double, bottom: Double
    /// A row under the plot area for marks that have no value (a failed run), so that none reads as a 0.
    let strip: Double
    private var marks: [String] = []

    /// `header`: the room above the plot area (title, legend); the plot area is `plotHeight` tall.
    init(x: NiceScale, y: NiceScale, header: Double = 78, plotHeight: Double = 340, strip: Double = 0) {
        self.x = x; self.y = y
        top = header; bottom = header + plotHeight
        self.strip = strip
    }

    /// The x axis line, under the strip if there is one.
    var base: Double { bottom + strip }

    func px(_ value: Double) -> Double { left + (value - x.lo) / (x.hi - x.lo) * (right - left) }
    func py(_ value: Double) -> Double { bottom - (value - y.lo) / (y.hi - y.lo) * (bottom - top) }

    mutating func add(_ mark: String) { marks.append(mark) }

    /// The whole document: `footer` lines (a caption) go below the x-axis label.
    func render(title: String, subtitle: String, xLabel: String, yLabel: String, legend: [String] = [], footer: [String] = []) -> String {
        let height = base + 64 + Double(footer.count) * 18 + (footer.isEmpty ? 0 : 8)
        var svg = [
            ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(n(Self.width))" height="\##(n(height))" viewBox="0 0 \##(n(Self.width)) \##(n(height))" font-family="\##(Self.font)">"##,
            ##"<rect width="100%" height="100%" fill="white"/>"##,
            text(title, x: left, y: 28, size: 17, attributes: ##"class="title" font-weight="bold""##),
            text(subtitle, x: left, y: 48, size: 12.5, attributes: ##"class="subtitle" fill="#555""##),
        ]
        svg.append(##"<g stroke="#e4e4e4" stroke-width="1">"##)
        svg += y.ticks.map { ##"<line class="y-grid" x1="\##(n(left))" y1="\##(n(py($0)))" x2="\##(n(right))" y2="\##(n(py($0)))"/>"## }
        svg += x.ticks.map { ##"<line class="x-grid" x1="\##(n(px($0)))" y1="\##(n(top))" x2="\##(n(px($0)))" y2="\##(n(base))"/>"## }
        svg.append("</g>")
        svg += y.ticks.map {
            text(y.label($0), x: left - 8, y: py($0) + 4, size: 12, attributes: ##"class="y-tick" text-anchor="end" fill="#333""##)
        }
        svg += x.ticks.map {
            text(x.label($0), x: px($0), y: base + 18, size: 12, attributes: ##"class="x-tick" text-anchor="middle" fill="#333""##)
        }
        svg.append(##"<rect class="frame" x="\##(n(left))" y="\##(n(top))" width="\##(n(right - left))" height="\##(n(base - top))" fill="none" stroke="#888"/>"##)
        svg += legend
        svg += marks
        svg.append(text(xLabel, x: (left + right) / 2, y: base + 44, size: 13.5, attributes: ##"class="x-label" text-anchor="middle""##))
        let middle = (top + bottom) / 2
        svg.append(text(yLabel, x: 24, y: middle, size: 13.5,
                        attributes: ##"class="y-label" text-anchor="middle" transform="rotate(-90 24 \##(n(middle)))""##))
        for (i, line) in footer.enumerated() {
            svg.append(text(line, x: left, y: base + 72 + Double(i) * 18, size: 12.5, attributes: ##"class="caption""##))
        }
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    func text(_ content: String, x: Double, y: Double, size: Double, attributes: String = "") -> String {
        ##"<text x="\##(n(x))" y="\##(n(y))" font-size="\##(n(size))" \##(attributes)>\##(Self.escape(content))</text>"##
    }

    /// Pixel coordinates with two decimals: a hundredth of a pixel is below what any renderer shows.
    func n(_ value: Double) -> String { Self.number(value) }

    static func number(_ value: Double) -> String {
        let text = String(format: "%.2f", value)
        return text.hasSuffix(".00") ? String(text.dropLast(3)) : text
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    /// Splits `text` at spaces into lines at most `width` pixels wide.
    static func wrap(_ text: String, width: Double, size: Double) -> [String] {
        var lines: [String] = [], line = ""
        for word in text.split(separator: " ") {
            let candidate = line.isEmpty ? String(word) : line + " " + word
            if !line.isEmpty && textWidth(candidate, size: size) > width {
                lines.append(line); line = String(word)
            } else {
                line = candidate
            }
        }
        return line.isEmpty ? lines : lines + [line]
    }

    /// A unit symbol as people write it on an axis.
    static func unitLabel(_ symbol: String) -> String? {
        switch symbol {
        case "", "1": nil
        case "degC": "°C"
        case "degF": "°F"
        case "mdegC": "m°C"
        case let micro where micro.hasPrefix("u"): "µ" + micro.dropFirst()
        default: symbol
        }
    }
}
