/// Which of a lab's free instruments serve a protocol's roles. A role is served by any instrument of
/// its driver type, preferably the one of the role's own name, otherwise the first by name; the
/// instruments of a station (a reactor and the photometer plumbed to it) are only used together, so
/// one run's instruments all come from one station or from the shared ones.
public enum InstrumentAssignment {
    /// `needs`: role → driver type; `free`: instrument → driver type; `stations`: instrument → station.
    /// Nil when the free instruments cannot serve every role at once.
    public static func assign(_ needs: [String: String], from free: [String: String], stations: [String: String] = [:])
        -> [String: String]? {
        let options: [String?] = Set(free.keys.compactMap { stations[$0] }).sorted() + [nil]
        for station in options {
            var pool: [String: [String]] = [:]   // type → usable instruments, by name
            for (instrument, type) in free.sorted(by: { $0.key < $1.key })
            where stations[instrument] == nil || stations[instrument] == station {
                pool[type, default: []].append(instrument)
            }
            var assignment: [String: String] = [:]
            for (role, type) in needs.sorted(by: { $0.key < $1.key }) {
                guard let instruments = pool[type], !instruments.isEmpty else { break }
                let index = instruments.firstIndex(of: role) ?? instruments.startIndex
                assignment[role] = instruments[index]
                pool[type]!.remove(at: index)
            }
            if assignment.count == needs.count { return assignment }
        }
        return nil
    }
}
